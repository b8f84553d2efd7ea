//! Analytics: what the engine logs about every turn, anonymised when it is
//! written, for the standard's indicators and for trainers who retrain the
//! classifier. Nothing here can lead back to a person: clients and
//! conversations are keyed hashes (`pseudonym`), and the client's words are
//! scrubbed of personal data before they are stored.

pub mod export;
pub mod indicators;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

mod pii;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    /// Unix seconds.
    pub ts: i64,
    /// Keyed hash of the conversation, to group turns without naming anyone.
    pub conversation: String,
    /// Keyed hash of the client (the same across conversations, to count
    /// repeat requests); replaced by a random value when the client
    /// withdraws consent, so nothing links it to them any more.
    #[serde(default)]
    pub client: String,
    pub channel: String,
    pub segment: String,
    pub node: String,
    /// The client's message, anonymised (empty for choices, digits, silence).
    pub text: String,
    pub intent: Option<String>,
    pub decision: Option<String>,
    /// The classifier's best candidates for `text` with their scores (empty
    /// when this turn classified nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scores: Vec<Candidate>,
    /// The intent the client confirmed in this turn: a guess accepted or an
    /// option chosen; or an operator's tag (event `operator_tag`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<String>,
    /// The life situation of `intent` (from the knowledge base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub situation: Option<String>,
    /// Time to answer, milliseconds: the engine's turn for a bot reply; for
    /// an operator's first reply (event `operator_reply`), the wait since
    /// the handoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_ms: Option<u64>,
    /// The client's rating at the end of a conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    /// Built-in events of the turn: handoff, solved_yes, solved_no, consent_given…
    pub events: Vec<String>,
}

/// A candidate intent and its score.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Candidate {
    pub intent: String,
    pub score: f32,
}

/// The ratings of the standard: ease (1 = «Легко» … 4 = «Сложно»),
/// satisfaction (1–5) and the NPS question (0–10).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Rating {
    pub ease: u8,
    #[serde(default)]
    pub satisfaction: Option<u8>,
    #[serde(default)]
    pub nps: Option<u8>,
}

/// Removes what could identify a person: the `personal` values the client
/// gave in forms («[данные]»), then whatever the scrubber finds in free text
/// (names, phones, documents, addresses, dates of birth…; see `pii`).
pub fn anonymise(text: &str, personal: &[&str]) -> String {
    let mut t = text.to_string();
    for p in personal {
        let p = p.trim();
        if p.chars().count() >= 2 {
            t = t.replace(p, "[данные]");
        }
    }
    pii::scrub(&t)
}

/// A pseudonym: HMAC-SHA-256 keyed by the analytics secret (`[analytics]
/// secret`, or a random one made once per database), so that nobody without
/// the secret can test whether a given person is in the log.
fn keyed(secret: &str, parts: &[&[u8]]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    for p in parts {
        m.update(&(p.len() as u64).to_le_bytes());
        m.update(p);
    }
    hex::encode(&m.finalize().into_bytes()[..12])
}

/// The conversation's pseudonym in the logs.
pub fn pseudonym(secret: &str, key: &str, conversation: u64) -> String {
    keyed(
        secret,
        &[b"conversation", key.as_bytes(), &conversation.to_le_bytes()],
    )
}

/// The client's pseudonym in the logs (the same in every conversation).
pub fn client_pseudonym(secret: &str, key: &str) -> String {
    keyed(secret, &[b"client", key.as_bytes()])
}

/// A pseudonym that links to no one (after a consent withdrawal).
pub fn unlinked() -> String {
    format!("x{:023x}", rand::random::<u128>() >> 36)
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
            a.contains("[телефон]") && a.contains("[email]") && a.contains("[данные]"),
            "{a}"
        );
        let a = anonymise("зовут Иван Петров, СНИЛС 123-456-789 01", &[]);
        assert_eq!(a, "зовут [ФИО], СНИЛС [СНИЛС]");
        assert_eq!(anonymise("мне 75 лет", &[]), "мне 75 лет");
    }

    #[test]
    fn pseudonyms_depend_on_the_secret_and_keep_clients_apart() {
        let a = client_pseudonym("s1", "web:abc");
        assert_eq!(a, client_pseudonym("s1", "web:abc"));
        assert_ne!(a, client_pseudonym("s2", "web:abc"));
        assert_ne!(a, client_pseudonym("s1", "web:abd"));
        assert_ne!(pseudonym("s1", "web:abc", 1), pseudonym("s1", "web:abc", 2));
        assert_eq!(a.len(), 24);
        assert_eq!(unlinked().len(), 24);
        assert_ne!(unlinked(), unlinked());
    }
}
