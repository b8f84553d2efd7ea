//! Where a knowledge base's text comes from and how it is compared: a
//! problem found while loading, with its file and line; finding a key's
//! line; the normalised form of a text. Shared by the loader (`kb.rs`) and
//! the eligibility rules (`eligibility.rs`).

use std::fmt;
use std::path::PathBuf;

/// One problem found while loading, with where it is.
#[derive(Debug, Clone)]
pub struct Problem {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// Lower-cased, punctuation-free, single-spaced form used to detect duplicates.
pub fn normalize_text(s: &str) -> String {
    let cleaned: String = s
        .to_lowercase()
        .replace('ё', "е")
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1-based line of the first line at or after `from` containing `needle`.
pub fn find_line(lines: &[&str], from: usize, needle: &str) -> usize {
    lines
        .iter()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .unwrap_or(from.max(1))
}
