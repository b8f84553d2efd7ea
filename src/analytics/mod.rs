//! Analytics: what the engine logs about every turn, anonymised when it is
//! written, for the standard's indicators and for trainers who retrain the
//! classifier. Nothing here can lead back to a person: no user id (a salted
//! hash of the conversation instead), no digits, e-mails or personal slot values.

use regex::Regex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// Unix seconds.
    pub ts: i64,
    /// Salted hash of the conversation, to group turns without naming anyone.
    pub conversation: String,
    pub channel: String,
    pub segment: String,
    pub node: String,
    /// The client's message, anonymised (empty for choices, digits, silence).
    pub text: String,
    pub intent: Option<String>,
    pub decision: Option<String>,
    /// Built-in events of the turn: handoff, solved_yes, solved_no, consent_given…
    pub events: Vec<String>,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\S+@\S+").unwrap());
static DIGITS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\d[\d\s\-()]{2,}\d|\d{3,}").unwrap());

/// Removes what could identify a person: e-mails, numbers of three digits or
/// more (phones, application and document numbers), and `personal` values.
pub fn anonymise(text: &str, personal: &[&str]) -> String {
    let mut t = text.to_string();
    for p in personal {
        let p = p.trim();
        if p.chars().count() >= 2 {
            t = t.replace(p, "[данные]");
        }
    }
    let t = EMAIL.replace_all(&t, "[email]");
    DIGITS.replace_all(&t, "[номер]").into_owned()
}

/// The conversation's pseudonym in the logs.
pub fn pseudonym(salt: &str, key: &str, conversation: u64) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(key.as_bytes());
    h.update(conversation.to_le_bytes());
    hex::encode(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_numbers_emails_and_names_are_removed() {
        let a = anonymise("мой телефон +7 (912) 345-67-89, почта ivan@mail.ru, заявление 1234567, зовут Иван Петров", &["Иван Петров"]);
        assert!(
            !a.contains("912")
                && !a.contains("ivan")
                && !a.contains("1234567")
                && !a.contains("Иван"),
            "{a}"
        );
        assert!(
            a.contains("[номер]") && a.contains("[email]") && a.contains("[данные]"),
            "{a}"
        );
        assert_eq!(anonymise("мне 75 лет", &[]), "мне 75 лет");
    }
}
