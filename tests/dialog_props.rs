//! Property tests: random inputs on random channels never panic the engine,
//! every input is one saved turn, and what is stored is what the engine
//! carries on with (reopening the database gives the same conversation).

mod common;

use otklik::dialog::{Engine, Input};
use proptest::prelude::*;
use std::sync::OnceLock;

const PHRASES: &[&str] = &[
    "пенсия",
    "льготы",
    "оператор",
    "да",
    "нет",
    "перезвоните мне",
    "записаться на прием",
    "статус заявления",
    "отзываю согласие",
    "спасибо до свидания",
    "я пенсионер",
    "у меня трое детей",
    "🙂",
    "",
    "  ",
    "hello",
    "+7 912 345 67 89",
    "1234567",
    "отменить запись",
    "пропустить",
    "другой вопрос",
    "a\u{0}b",
    "ＡＢＣ",
    "ёжик",
];

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => proptest::sample::select(PHRASES).prop_map(|s| Input::Text(s.to_string())),
        2 => "\\PC{0,40}".prop_map(Input::Text),
        2 => proptest::sample::select(&["yes", "no", "operator", "other", "skip", "finish", "easy", "1", "x"][..]).prop_map(|s| Input::Choice(s.into())),
        1 => "[0-9*#]{1,3}".prop_map(Input::Dtmf),
        1 => Just(Input::Silence),
        1 => Just(Input::Start),
        1 => Just(Input::Attachment("photo".into())),
        1 => proptest::sample::select(&["universal", "senior", "family", "disability", "jobseeker"][..]).prop_map(|s| Input::SetSegment(s.into())),
    ]
}

fn engine() -> &'static (Engine, tempfile::TempDir) {
    static E: OnceLock<(Engine, tempfile::TempDir)> = OnceLock::new();
    E.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = common::engine_at(dir.path(), common::WORKDAY);
        (e, dir)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_input_never_panics_or_loses_a_turn(
        channel in proptest::sample::select(&["web", "telegram", "voice"][..]),
        user in "[a-z]{6}",
        inputs in proptest::collection::vec(input(), 1..14),
    ) {
        let (e, _) = engine();
        for inp in inputs {
            let before = e.session(&otklik::store::SessionKey::new(channel, user.as_str())).unwrap().map(|s| s.turns).unwrap_or(0);
            let r = e.handle(channel, &user, inp.clone());
            prop_assert!(r.is_ok(), "{inp:?} failed: {:?}", r.err());
            let after = e.session(&otklik::store::SessionKey::new(channel, user.as_str())).unwrap().unwrap();
            prop_assert_eq!(after.turns, before + 1, "one input, one saved turn ({:?})", inp);
            let t = r.unwrap();
            if channel == "voice" {
                prop_assert!(!t.text.contains("http"), "URL in voice: {}", t.text);
            }
        }
    }
}
