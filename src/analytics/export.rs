//! Utterances for trainers: the analytics log turned into one record per
//! client utterance, with what the classifier predicted and what the client
//! (or the operator who handled the conversation) showed the right intent to
//! be. `otklik export` writes them; `otklik suggest` learns from them.

use super::{Candidate, LogEntry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The event of an operator's tag: the intent of a conversation they handled.
pub const OPERATOR_TAG: &str = "operator_tag";

/// One client utterance, anonymised, with its outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Utterance {
    /// Unix seconds.
    pub ts: i64,
    pub conversation: String,
    pub channel: String,
    pub segment: String,
    /// The scrubbed text.
    pub text: String,
    /// The classifier's best intent, if it classified the text.
    pub predicted: Option<String>,
    pub scores: Vec<Candidate>,
    /// answer, confirm, alternatives or out_of_scope.
    pub decision: Option<String>,
    /// The intent the client confirmed, or the operator tagged.
    pub confirmed: Option<String>,
    /// How `confirmed` is known: `confirm` (a guess accepted), `option` (an
    /// option chosen) or `operator` (an operator's tag: the best label).
    pub label_source: Option<String>,
    /// «Решён»: yes or no, when the client answered.
    pub solved: Option<bool>,
    pub handed_off: bool,
}

/// The utterances of `log` (oldest first), each with the outcome of the
/// turns that followed it in its conversation up to the next classified
/// utterance. An operator's tag labels the utterances that led to the
/// handoff it closes (those after the last «решён: да» before it).
pub fn utterances(log: &[LogEntry]) -> Vec<Utterance> {
    let mut by_conversation: HashMap<&str, Vec<&LogEntry>> = HashMap::new();
    for e in log {
        by_conversation
            .entry(e.conversation.as_str())
            .or_default()
            .push(e);
    }
    let mut out = Vec::new();
    for entries in by_conversation.values() {
        out.extend(conversation(entries));
    }
    out.sort_by(|a, b| (a.ts, &a.conversation).cmp(&(b.ts, &b.conversation)));
    out
}

fn has(e: &LogEntry, event: &str) -> bool {
    e.events.iter().any(|x| x == event)
}

/// One conversation's utterances (its entries in the order written).
fn conversation(entries: &[&LogEntry]) -> Vec<Utterance> {
    let mut out: Vec<Utterance> = Vec::new();
    // Utterances since the last «решён: да»: an operator's tag labels them.
    let mut open: Vec<usize> = Vec::new();
    for e in entries {
        if has(e, OPERATOR_TAG) {
            if let Some(intent) = &e.confirmed {
                for &i in &open {
                    out[i].confirmed = Some(intent.clone());
                    out[i].label_source = Some("operator".into());
                }
            }
            continue;
        }
        let classified = !e.scores.is_empty();
        if classified && !e.text.is_empty() {
            out.push(Utterance {
                ts: e.ts,
                conversation: e.conversation.clone(),
                channel: e.channel.clone(),
                segment: e.segment.clone(),
                text: e.text.clone(),
                predicted: e.scores.first().map(|c| c.intent.clone()),
                scores: e.scores.clone(),
                decision: e.decision.clone(),
                confirmed: None,
                label_source: None,
                solved: None,
                handed_off: false,
            });
            open.push(out.len() - 1);
        }
        // What this turn says about the latest utterance.
        let Some(u) = out.last_mut() else { continue };
        if let Some(intent) = &e.confirmed {
            if u.label_source.as_deref() != Some("operator") {
                u.confirmed = Some(intent.clone());
                u.label_source = Some(
                    if has(e, "option_chosen") {
                        "option"
                    } else {
                        "confirm"
                    }
                    .into(),
                );
            }
        }
        if has(e, "handoff") {
            u.handed_off = true;
        }
        if has(e, "solved_yes") {
            u.solved.get_or_insert(true);
            open.clear();
        }
        if has(e, "solved_no") {
            u.solved.get_or_insert(false);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(conv: &str, ts: i64, text: &str, events: &[&str]) -> LogEntry {
        LogEntry {
            ts,
            conversation: conv.into(),
            channel: "web".into(),
            segment: "universal".into(),
            text: text.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        }
    }

    fn classified(conv: &str, ts: i64, text: &str, best: &str, decision: &str) -> LogEntry {
        LogEntry {
            scores: vec![Candidate {
                intent: best.into(),
                score: 0.5,
            }],
            decision: Some(decision.into()),
            ..entry(conv, ts, text, &[])
        }
    }

    #[test]
    fn outcomes_follow_their_utterance() {
        let log = vec![
            classified("a", 1, "пособие на ребёнка", "child_allowance", "confirm"),
            LogEntry {
                confirmed: Some("child_allowance".into()),
                ..entry("a", 2, "", &["confirm_yes"])
            },
            entry("a", 3, "", &["solved_yes"]),
            classified(
                "b",
                4,
                "как получить выплату",
                "pension_application",
                "alternatives",
            ),
            LogEntry {
                confirmed: Some("child_allowance".into()),
                ..entry("b", 5, "", &["option_chosen"])
            },
            entry("b", 6, "", &["solved_no"]),
            classified("b", 7, "нужен человек", "operator", "answer"),
            entry("b", 8, "", &["handoff"]),
            LogEntry {
                confirmed: Some("large_family_status".into()),
                ..entry("b", 9, "", &[OPERATOR_TAG])
            },
            entry("c", 10, "спасибо", &[]),
        ];
        let u = utterances(&log);
        assert_eq!(u.len(), 3, "the unclassified «спасибо» is no utterance");
        assert_eq!(u[0].confirmed.as_deref(), Some("child_allowance"));
        assert_eq!(u[0].label_source.as_deref(), Some("confirm"));
        assert_eq!(u[0].solved, Some(true));
        assert!(!u[0].handed_off);
        // The operator's tag is the best label: it overrides the option the
        // client chose for both utterances before the handoff.
        assert_eq!(u[1].predicted.as_deref(), Some("pension_application"));
        assert_eq!(u[1].confirmed.as_deref(), Some("large_family_status"));
        assert_eq!(u[1].label_source.as_deref(), Some("operator"));
        assert_eq!(u[1].solved, Some(false));
        assert!(u[2].handed_off);
        assert_eq!(u[2].label_source.as_deref(), Some("operator"));
    }
}
