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

// ---------------------------------------------------------------- the engine

use otklik::dialog::{Engine, Input, Turn};
use otklik::services::profile::Profile;

/// The fact the turn asks about, if it is an interview question.
fn asked(t: &Turn) -> Option<Fact> {
    t.events
        .iter()
        .find_map(|e| e.strip_prefix("search_asked:"))
        .and_then(Fact::from_name)
}

/// A client's answer to the question about `f`, in words, from `truth`.
fn say(f: Fact, truth: &BTreeMap<String, String>) -> Input {
    let v = truth.get(f.name()).map(String::as_str);
    let words = |n: &str| match n {
        "67" => "шестьдесят семь".to_string(),
        "34" => "тридцать четыре".to_string(),
        "5" => "пять".to_string(),
        other => other.to_string(),
    };
    Input::Text(match (f, v) {
        (Fact::YoungestChildAge | Fact::OldestChildAge, None) => "детей нет".into(),
        (Fact::Disability, Some("none")) => "нет".into(),
        (Fact::Disability, Some(g)) => format!("{g} группа"),
        (Fact::Employment, Some("unemployed")) => "не работаю".into(),
        (Fact::Employment, Some("retired")) => "на пенсии".into(),
        (Fact::Employment, Some(_)) => "работаю".into(),
        (Fact::Income, Some("low")) => "да, ниже".into(),
        (Fact::Income, Some(_)) => "нет, не ниже".into(),
        (_, Some(n)) => words(n),
        (_, None) => "не знаю".into(),
    })
}

/// Runs the interview from `opening` with answers from `truth`: the
/// questions asked and the measures offered at the end.
fn run_interview(
    e: &Engine,
    user: &str,
    opening: &str,
    truth: &BTreeMap<String, String>,
) -> (Vec<Fact>, Vec<String>, Turn) {
    let mut t = e.handle("web", user, Input::Text(opening.into())).unwrap();
    if t.decision.as_deref() == Some("confirm") {
        t = e.handle("web", user, Input::Choice("yes".into())).unwrap();
    }
    let mut questions = Vec::new();
    while let Some(f) = asked(&t) {
        questions.push(f);
        assert!(questions.len() <= MAX_QUESTIONS, "{questions:?}");
        t = e.handle("web", user, say(f, truth)).unwrap();
    }
    let measures: BTreeSet<&str> = e.nlu.kb.measures().into_iter().map(|(id, _)| id).collect();
    let offered = t
        .choices
        .iter()
        .filter(|c| measures.contains(c.id.as_str()))
        .map(|c| c.id.clone())
        .collect();
    (questions, offered, t)
}

fn truth(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_engine_asks_only_what_is_not_known_and_lists_the_eligible_measures() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = common::engine_at(dir.path(), common::WORKDAY);
    let pensioner = truth(&[
        ("age", "67"),
        ("children", "0"),
        ("disability", "2"),
        ("employment", "retired"),
        ("income", "normal"),
    ]);
    let mother = truth(&[
        ("age", "34"),
        ("children", "2"),
        ("youngest_child_age", "5"),
        ("disability", "none"),
        ("employment", "unemployed"),
        ("income", "low"),
    ]);
    for (user, who) in [("p1", &pensioner), ("m1", &mother)] {
        let (qs, offered, t) = run_interview(&e, user, "что мне положено", who);
        assert!((1..=MAX_QUESTIONS).contains(&qs.len()), "{user}: {qs:?}");
        let mut want: Vec<String> = e
            .nlu
            .kb
            .eligible(who)
            .into_iter()
            .map(String::from)
            .collect();
        let mut got = offered.clone();
        want.sort();
        got.sort();
        assert_eq!(got, want, "{user}: {}", t.text);
        assert!(t.text.contains("Вам подходят"), "{}", t.text);
        // the most particular measure first: the single allowance (two conditions)
        if *user == *"m1" {
            assert_eq!(offered[0], "child_allowance", "{offered:?}");
        }
    }
    // facts said in the message are not asked: fewer questions
    let (full, _, _) = run_interview(&e, "p2", "что мне положено", &pensioner);
    let (said, offered, _) = run_interview(
        &e,
        "p3",
        "мне 67 лет, я инвалид второй группы, что мне положено",
        &pensioner,
    );
    assert!(
        !said.contains(&Fact::Age) && !said.contains(&Fact::Disability),
        "{said:?}"
    );
    assert!(said.len() < full.len(), "{said:?} vs {full:?}");
    let mut want: Vec<String> = e
        .nlu
        .kb
        .eligible(&pensioner)
        .into_iter()
        .map(String::from)
        .collect();
    let mut got = offered;
    want.sort();
    got.sort();
    assert_eq!(got, want);
    // facts kept in the profile are not asked either
    let key = "web:p4";
    let p = Profile {
        facts: truth(&[("age", "67"), ("income", "normal"), ("children", "0")]),
        ..Default::default()
    };
    e.store
        .write_records(vec![p.save(key).unwrap()])
        .unwrap()
        .unwrap();
    let (kept, _, _) = run_interview(&e, "p4", "что мне положено", &pensioner);
    assert!(
        kept.iter()
            .all(|f| !matches!(f, Fact::Age | Fact::Income | Fact::YoungestChildAge)),
        "{kept:?}"
    );
    assert!(kept.len() < full.len(), "{kept:?} vs {full:?}");
    // «не знаю» skips a question: the measures it decides are offered as possible
    let unknown = truth(&[]);
    let (qs, _, t) = run_interview(&e, "u1", "что мне положено", &unknown);
    assert!(qs.len() <= MAX_QUESTIONS && !qs.is_empty(), "{qs:?}");
    assert!(t.text.contains("может подойти"), "{}", t.text);
}

#[test]
fn the_profile_is_saved_with_consent_shown_deleted_and_gone_on_withdrawal() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = common::engine_at(dir.path(), common::WORKDAY);
    let who = truth(&[
        ("age", "67"),
        ("children", "0"),
        ("disability", "none"),
        ("employment", "retired"),
        ("income", "normal"),
    ]);
    let kept = |user: &str| {
        Profile::load(&*e.store, &format!("web:{user}"))
            .unwrap()
            .facts
    };
    // declined consent: nothing kept
    let (_, _, t) = run_interview(&e, "a", "что мне положено", &who);
    assert!(t.choices.iter().any(|c| c.id == "save"), "{:?}", t.choices);
    let t = e.handle("web", "a", Input::Choice("save".into())).unwrap();
    assert!(t.text.contains("согласны"), "{}", t.text);
    let t = e.handle("web", "a", Input::Text("нет".into())).unwrap();
    assert!(t.text.contains("не буду сохранять"), "{}", t.text);
    assert!(kept("a").is_empty());
    assert!(e.store.consent("web:a").unwrap().is_none());
    // consent given: kept, and shown
    e.handle("web", "a", Input::Start).unwrap();
    let (_, _, t) = run_interview(&e, "a", "что мне положено", &who);
    assert!(t.choices.iter().any(|c| c.id == "save"));
    e.handle("web", "a", Input::Choice("save".into())).unwrap();
    let t = e.handle("web", "a", Input::Text("да".into())).unwrap();
    assert!(t.text.contains("сохранила"), "{}", t.text);
    assert!(!t.choices.iter().any(|c| c.id == "save"), "{:?}", t.choices);
    assert!(e.store.consent("web:a").unwrap().unwrap().active());
    assert_eq!(kept("a").get("age").map(String::as_str), Some("67"));
    let t = e
        .handle("web", "a", Input::Text("мой профиль".into()))
        .unwrap();
    assert!(t.text.contains("возраст: 67 лет"), "{}", t.text);
    assert!(t.text.contains("на пенсии"), "{}", t.text);
    // the next search asks nothing: all is known
    e.handle("web", "a", Input::Start).unwrap();
    let (qs, offered, _) = run_interview(&e, "a", "что мне положено", &who);
    assert!(qs.is_empty(), "{qs:?}");
    assert!(
        offered.contains(&"pension_application".to_string()),
        "{offered:?}"
    );
    // deleted by the button, then by words
    let t = e
        .handle("web", "a", Input::Text("мой профиль".into()))
        .unwrap();
    assert!(t.choices.iter().any(|c| c.id == "profile_delete"));
    let t = e
        .handle("web", "a", Input::Choice("profile_delete".into()))
        .unwrap();
    assert!(t.text.contains("удалила"), "{}", t.text);
    assert!(kept("a").is_empty());
    // consent stays: deleting the profile is not a withdrawal
    assert!(e.store.consent("web:a").unwrap().unwrap().active());
    let t = e
        .handle("web", "a", Input::Text("мой профиль".into()))
        .unwrap();
    assert!(t.text.contains("пока ничего нет"), "{}", t.text);

    // a withdrawal deletes the profile in the same turn
    e.handle("web", "b", Input::Start).unwrap();
    run_interview(&e, "b", "что мне положено", &who);
    e.handle("web", "b", Input::Choice("save".into())).unwrap();
    e.handle("web", "b", Input::Text("да".into())).unwrap();
    assert!(!kept("b").is_empty());
    let t = e
        .handle(
            "web",
            "b",
            Input::Text("отзываю согласие на обработку персональных данных".into()),
        )
        .unwrap();
    assert!(t.text.contains("Согласие отозвано"), "{}", t.text);
    assert!(kept("b").is_empty());
    let s = e
        .session(&otklik::store::SessionKey::new("web", "b"))
        .unwrap()
        .unwrap();
    assert!(s.facts.is_empty());
    // «удалить мои данные из профиля» deletes the profile, not the consent
    e.handle("web", "c", Input::Start).unwrap();
    run_interview(&e, "c", "что мне положено", &who);
    e.handle("web", "c", Input::Choice("save".into())).unwrap();
    e.handle("web", "c", Input::Text("да".into())).unwrap();
    let t = e
        .handle(
            "web",
            "c",
            Input::Text("удалите мои данные из профиля".into()),
        )
        .unwrap();
    assert!(t.text.contains("удалила все сведения"), "{}", t.text);
    assert!(kept("c").is_empty());
    assert!(e.store.consent("web:c").unwrap().unwrap().active());
}
