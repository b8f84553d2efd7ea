//! The service search («Что мне положено?»): the interview's planner over
//! every demo measure with random profiles (never more than five questions,
//! and the result is exactly the eligible set), and, with the real engine,
//! the question count with an empty profile, a kept profile and facts said
//! in the message; the profile's view and deletion; a consent withdrawal
//! deletes the profile.

mod common;

use otklik::nlu::eligibility::{next_question, Fact, Tri, MAX_QUESTIONS};
use otklik::nlu::kb::KnowledgeBase;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

fn demo_kb() -> KnowledgeBase {
    let cfg = common::config();
    KnowledgeBase::load_dir(&cfg.kb.intents_dir, cfg.kb.min_examples, &cfg.kb.segments).unwrap()
}

/// A whole profile: every fact a value (children's ages only with children).
fn profile() -> impl Strategy<Value = BTreeMap<String, String>> {
    (
        0u32..100,
        0u32..6,
        0u32..30,
        0u32..15,
        prop::sample::select(Fact::Disability.values().to_vec()),
        prop::sample::select(Fact::Employment.values().to_vec()),
        prop::sample::select(Fact::Income.values().to_vec()),
        prop::sample::select(vec!["москва", "тверская_область"]),
    )
        .prop_map(|(age, children, oldest, gap, dis, emp, inc, region)| {
            let mut f = BTreeMap::new();
            f.insert("age".to_string(), age.to_string());
            f.insert("children".into(), children.to_string());
            if children > 0 {
                f.insert("oldest_child_age".into(), oldest.to_string());
                f.insert(
                    "youngest_child_age".into(),
                    oldest.saturating_sub(gap).to_string(),
                );
            }
            f.insert("disability".into(), dis.to_string());
            f.insert("employment".into(), emp.to_string());
            f.insert("income".into(), inc.to_string());
            f.insert("region".into(), region.to_string());
            f
        })
}

/// Runs the planner as the interview does: `known` are the facts already
/// kept or said; each question is answered truthfully from `truth` (a
/// child's age without children: «детей нет»). Returns the questions asked
/// and what the interview knows at the end.
fn interview(
    kb: &KnowledgeBase,
    truth: &BTreeMap<String, String>,
    mut known: BTreeMap<String, String>,
) -> (Vec<Fact>, BTreeMap<String, String>) {
    let cands: Vec<_> = kb.measures().into_iter().map(|(_, e)| e).collect();
    let mut asked = Vec::new();
    while asked.len() < MAX_QUESTIONS {
        let Some(q) = next_question(&cands, &known, &BTreeSet::new()) else {
            break;
        };
        asked.push(q);
        match truth.get(q.name()) {
            Some(v) => known.insert(q.name().into(), v.clone()),
            None => known.insert("children".into(), "0".into()),
        };
    }
    (asked, known)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn the_interview_asks_at_most_five_and_finds_exactly_the_eligible_set(
        truth in profile(),
        keep in prop::collection::vec(any::<bool>(), 8),
    ) {
        static KB: std::sync::OnceLock<KnowledgeBase> = std::sync::OnceLock::new();
        let kb = KB.get_or_init(demo_kb);
        // some facts already in the profile or said
        let known: BTreeMap<String, String> = truth
            .iter()
            .zip(keep.iter().cycle())
            .filter(|(_, k)| **k)
            .map(|((k, v), _)| (k.clone(), v.clone()))
            .collect();
        let (asked, end) = interview(kb, &truth, known.clone());
        prop_assert!(asked.len() <= MAX_QUESTIONS, "{asked:?}");
        // nothing known is asked again
        prop_assert!(asked.iter().all(|q| !known.contains_key(q.name())), "{asked:?} {known:?}");
        let undecided: Vec<&str> = kb
            .measures()
            .into_iter()
            .filter(|(_, e)| e.eval(&end) == Tri::Unknown)
            .map(|(id, _)| id)
            .collect();
        prop_assert!(undecided.is_empty(), "{undecided:?} after {asked:?}");
        prop_assert_eq!(kb.eligible(&end), kb.eligible(&truth));
    }
}

#[test]
fn the_demo_has_measures_with_rules_and_an_empty_profile_needs_five_questions_at_most() {
    let kb = demo_kb();
    assert!(
        (8..=12).contains(&kb.measures().len()),
        "{}",
        kb.measures().len()
    );
    // the worst case over every answer: a depth-first walk of the planner's tree
    fn depth(kb: &KnowledgeBase, known: BTreeMap<String, String>) -> usize {
        let cands: Vec<_> = kb.measures().into_iter().map(|(_, e)| e).collect();
        let Some(q) = next_question(&cands, &known, &BTreeSet::new()) else {
            return 0;
        };
        let answers: Vec<String> = if q.numeric() {
            // every side of the demo's bounds
            [0u32, 1, 5, 15, 16, 17, 30, 54, 55, 59, 60, 64, 65, 66, 80]
                .iter()
                .map(|n| n.to_string())
                .collect()
        } else {
            q.values().iter().map(|s| s.to_string()).collect()
        };
        let mut worst = 0;
        for a in answers {
            let mut k = known.clone();
            k.insert(q.name().into(), a);
            worst = worst.max(depth(kb, k));
        }
        if q.of_child() {
            let mut k = known.clone();
            k.insert("children".into(), "0".into());
            worst = worst.max(depth(kb, k));
        }
        1 + worst
    }
    let d = depth(&kb, BTreeMap::new());
    assert!((3..=MAX_QUESTIONS).contains(&d), "worst case {d} questions");
}
