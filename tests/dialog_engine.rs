//! The dialog engine against real parts: the sled database across a restart
//! and a kill -9, concurrent bookings of one slot, the HTTP status provider
//! against a real HTTP server, `otklik chat` driven through a pipe, and
//! replies of marked inputs kept as undelivered until confirmed.

mod common;

use common::{engine_at, WORKDAY};
use otklik::dialog::{Engine, Input, PendingReply, Turn};
use otklik::services::status::{HttpStatus, StatusProvider};
use otklik::services::Clock;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

fn say(e: &Engine, user: &str, text: &str) -> Turn {
    e.handle("web", user, Input::Text(text.into())).unwrap()
}

fn pick(e: &Engine, user: &str, t: &Turn, n: usize) -> Turn {
    e.handle("web", user, Input::Choice(t.choices[n].id.clone()))
        .unwrap()
}

#[test]
fn a_conversation_survives_a_restart_in_the_middle_of_a_form() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (e, _) = engine_at(dir.path(), WORKDAY);
        e.handle("web", "u1", Input::Start).unwrap();
        let t = say(&e, "u1", "хочу записаться на прием");
        assert!(t.text.contains("согласны"), "{}", t.text);
        let t = say(&e, "u1", "да");
        let t = pick(&e, "u1", &t, 0); // service
        assert!(t.text.contains("отделение"), "{}", t.text);
    } // the process "stops": the engine and its database are closed
    let (e, _) = engine_at(dir.path(), WORKDAY);
    let t = e
        .resume("web", "u1")
        .unwrap()
        .expect("the conversation is still there");
    assert!(t.text.contains("Выберите отделение"), "{}", t.text);
    let t = pick(&e, "u1", &t, 0); // office
    let t = pick(&e, "u1", &t, 0); // day
    pick(&e, "u1", &t, 0); // time
    let t = say(&e, "u1", "Сидорова Мария");
    assert!(
        t.text.contains("Пособия и выплаты"),
        "the service chosen before the restart is kept: {}",
        t.text
    );
    let t = say(&e, "u1", "да");
    assert!(t.text.contains("Вы записаны"), "{}", t.text);
    assert_eq!(e.store.appointments_of("web:u1").unwrap().len(), 1);
}

#[test]
fn a_marked_reply_stays_undelivered_until_confirmed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = ("telegram:update:7:0", "telegram:update:7");
    let answer = {
        let (e, _) = engine_at(dir.path(), WORKDAY);
        let t0 = e
            .handle_once("telegram", "42", Input::Start, Some(first))
            .unwrap()
            .unwrap();
        let t1 = e
            .handle_once(
                "telegram",
                "42",
                Input::Text("когда придёт пенсия".into()),
                Some(second),
            )
            .unwrap()
            .unwrap();
        assert!(t1.seq > t0.seq);
        // An unmarked turn (web) leaves nothing to deliver.
        e.handle("web", "u1", Input::Start).unwrap();
        t1.text
    }; // a crash before either was sent
    let (e, _) = engine_at(dir.path(), WORKDAY);
    let pending = e.store.undelivered(Some("telegram:update:7")).unwrap();
    let markers: Vec<&str> = pending.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        markers,
        [first, second],
        "the earlier turn of the input first"
    );
    let p: PendingReply = serde_json::from_slice(&pending[1].1).unwrap();
    assert_eq!(p.user, "42");
    assert_eq!(p.turn.text, answer);
    assert_eq!(
        p.seq,
        e.session(&otklik::store::SessionKey::new("telegram", "42"))
            .unwrap()
            .unwrap()
            .turns
    );
    // The input is not run again, and its reply stays until confirmed.
    assert!(e
        .handle_once(
            "telegram",
            "42",
            Input::Text("когда придёт пенсия".into()),
            Some(second)
        )
        .unwrap()
        .is_none());
    assert_eq!(e.store.undelivered(None).unwrap().len(), 2);
    e.store.delivered(first).unwrap();
    e.store.delivered(second).unwrap();
    assert!(e.store.undelivered(None).unwrap().is_empty());
}

#[test]
fn one_slot_cannot_be_booked_twice_under_concurrent_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = engine_at(dir.path(), WORKDAY);
    let store = e.store.clone();
    let booked: Vec<bool> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let st = store.clone();
                sc.spawn(move || {
                    let a = otklik::store::Appointment {
                        id: 0,
                        user: format!("web:u{i}"),
                        service: "benefits".into(),
                        office: "central".into(),
                        date: "2026-11-27".into(),
                        time: "09:00".into(),
                        name: None,
                        created: 0,
                    };
                    st.book(a, 1).unwrap().is_ok()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        booked.iter().filter(|b| **b).count(),
        1,
        "exactly one booking wins: {booked:?}"
    );
    assert_eq!(
        store
            .booked("benefits", "central", "2026-11-27", "09:00")
            .unwrap(),
        1
    );
}

#[test]
fn a_slot_taken_while_the_client_decides_is_offered_again() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = engine_at(dir.path(), WORKDAY);
    let mut last = Vec::new();
    for u in ["a", "b"] {
        e.handle("web", u, Input::Start).unwrap();
        say(&e, u, "хочу записаться на прием");
        let mut t = say(&e, u, "да");
        for _ in 0..4 {
            t = pick(&e, u, &t, 0); // same service, office, day and time
        }
        last.push(say(&e, u, "Иванов Пётр"));
    }
    let a = say(&e, "a", "да");
    assert!(a.text.contains("Вы записаны"), "{}", a.text);
    let b = say(&e, "b", "да");
    assert!(b.text.contains("это время уже заняли"), "{}", b.text);
    assert!(
        !b.choices.iter().any(|c| c.id == "09:00"),
        "the taken time is not offered: {:?}",
        b.choices
    );
    let b = pick(&e, "b", &b, 0);
    let b2 = say(&e, "b", "да");
    assert!(
        b.text.contains("Всё верно?") && b2.text.contains("Вы записаны"),
        "{} / {}",
        b.text,
        b2.text
    );
    assert_eq!(e.store.appointments().unwrap().len(), 2);
}

/// A real HTTP backend on loopback: known, unknown, failing and slow numbers.
fn status_server() -> String {
    use axum::{extract::Path, http::StatusCode, routing::get, Json, Router};
    let app = Router::new().route(
        "/status/{n}",
        get(|Path(n): Path<String>| async move {
            match n.as_str() {
                "555000" => Ok(Json(
                    serde_json::json!({"status": "готово", "details": "Заберите документ в МФЦ."}),
                )),
                "500500" => Err(StatusCode::INTERNAL_SERVER_ERROR),
                "777777" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Err(StatusCode::OK)
                }
                _ => Err(StatusCode::NOT_FOUND),
            }
        }),
    );
    format!("http://{}/status", common::serve_in_background(app))
}

#[test]
fn http_status_provider_against_a_real_server() {
    let url = status_server();
    let p = HttpStatus::new(&url, Duration::from_millis(500)).unwrap();
    let s = p.lookup("555000").unwrap().unwrap();
    assert_eq!(s.status, "готово");
    assert!(p.lookup("123123").unwrap().is_none());
    assert!(p.lookup("500500").is_err());
    let t0 = std::time::Instant::now();
    assert!(p.lookup("777777").is_err());
    assert!(t0.elapsed() < Duration::from_secs(3), "the timeout applies");
    let dead = HttpStatus::new("http://127.0.0.1:9/status", Duration::from_millis(500)).unwrap();
    assert!(dead.lookup("555000").is_err());
    assert!(HttpStatus::new("ftp://x", Duration::from_secs(1)).is_err());
}

#[test]
fn a_failing_status_backend_gives_the_client_a_clear_message() {
    let url = status_server();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::config_with_data(dir.path());
    cfg.status.provider = "http".into();
    cfg.status.url = url;
    cfg.status.timeout_ms = 500;
    let clock = std::sync::Arc::new(otklik::services::FixedClock::new(WORKDAY.parse().unwrap()));
    let e = Engine::new(&cfg, common::shared_nlu(), clock).unwrap();
    e.handle("web", "u", Input::Start).unwrap();
    say(&e, "u", "статус заявления");
    say(&e, "u", "да");
    let t = say(&e, "u", "555000");
    assert!(t.text.contains("готово"), "{}", t.text);
    say(&e, "u", "да");
    say(&e, "u", "статус заявления");
    let t = say(&e, "u", "500500");
    assert!(t.text.contains("сервис временно недоступен"), "{}", t.text);
}

fn chat_cmd(data: &std::path::Path, user: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_otklik"));
    c.env("OTKLIK_TUNE_DIR", common::tune_dir());
    c.args(["chat", "--json", "--user", user, "--now", WORKDAY])
        .env("OTKLIK_DATA_DIR", data)
        .env("OTKLIK_KB_CACHE_DIR", common::test_data_dir().join("cache"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

#[test]
fn otklik_chat_reads_a_piped_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = chat_cmd(dir.path(), "pipe").spawn().unwrap();
    let script = "льготы\n#2\nнет\n#dtmf 0\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let turns: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(turns.len(), 5, "{turns:?}");
    for t in &turns {
        for k in [
            "text", "choices", "actions", "intent", "decision", "segment",
        ] {
            assert!(t.get(k).is_some(), "{k} missing in {t}");
        }
    }
    assert_eq!(turns[1]["decision"], "alternatives");
    assert_eq!(turns[1]["choices"][0]["dtmf"], "1");
    assert_eq!(
        turns[2]["intent"], turns[1]["choices"][1]["id"],
        "#2 picked the second option"
    );
    assert!(turns[3]["text"]
        .as_str()
        .unwrap()
        .contains("другими словами"));
    assert_eq!(turns[4]["actions"][0], "handoff");
}

/// Kills `otklik chat` (SIGKILL) while it is answering a stream of messages,
/// then checks that every turn whose reply was printed is in the database and
/// that the conversation goes on from there.
#[test]
fn kill_9_during_writes_loses_no_completed_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = chat_cmd(dir.path(), "crash").spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    lines.next().unwrap().unwrap(); // the greeting
                                    // Send many messages at once so the process is busy writing when it dies.
    let msgs: Vec<String> = (0..200)
        .map(|i| format!("вопрос номер {i} про пособие"))
        .collect();
    let writer = std::thread::spawn(move || {
        for m in msgs {
            if writeln!(stdin, "{m}").is_err() {
                break;
            }
        }
    });
    let mut seen = 0;
    for l in lines.by_ref() {
        serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap();
        seen += 1;
        if seen == 25 {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let _ = writer.join();
    let (e, _) = engine_at(dir.path(), WORKDAY);
    let s = e
        .session(&otklik::store::SessionKey::new("web", "crash"))
        .unwrap()
        .expect("session stored");
    assert!(
        s.turns as usize > seen,
        "{} turns stored, {} replies were printed",
        s.turns,
        seen + 1
    );
    for i in 0..seen {
        let m = format!("вопрос номер {i} про пособие");
        assert!(s.history.iter().any(|h| h.text == m), "turn {i} lost");
    }
    // and the conversation continues
    let t = e
        .handle("web", "crash", Input::Text("пенсия".into()))
        .unwrap();
    assert!(!t.text.is_empty());
    assert_eq!(
        e.session(&otklik::store::SessionKey::new("web", "crash"))
            .unwrap()
            .unwrap()
            .turns,
        s.turns + 1
    );
}

/// A small graph of its own on top of the project's prompts: the generic
/// transitions on yes, no, digits, silence and free text, and a typed slot.
#[test]
fn generic_transitions_of_a_custom_graph() {
    use otklik::dialog::graph::Graph;
    let extra = r#"
  t_start:
    kind: choice
    text: "Тест: скажите да или нет, нажмите клавиши или назовите номер."
    choices:
      - {id: go, label: "Дальше", next: start}
    on: {yes: t_yes, no: t_no, digits: t_digits, silence: t_silence, text: t_number}
  t_yes: {kind: say, text: "Вы сказали да.", next: t_start}
  t_no: {kind: say, text: "Вы сказали нет.", next: t_start}
  t_digits: {kind: say, text: "Вы нажали {digits}.", next: t_start}
  t_silence: {kind: say, text: "Тишина.", next: t_start}
  t_number: {kind: ask, text: "Назовите код из цифр.", slot: number, slot_type: digits, next: t_done}
  t_done: {kind: say, text: "Код {number} принят.", next: t_start}
"#;
    let text = std::fs::read_to_string("dialogs/main.yaml").unwrap();
    let text = text.replacen("start: start", "start: t_start", 1).replacen(
        "nodes:\n",
        &format!("nodes:\n{extra}"),
        1,
    );
    let nlu = common::shared_nlu();
    let ids: Vec<String> = nlu.kb.intents.iter().map(|i| i.id.clone()).collect();
    let graph =
        Graph::from_sources(&[("main.yaml".into(), text)], &ids).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::config_with_data(dir.path());
    let store: std::sync::Arc<dyn otklik::store::Storage> =
        std::sync::Arc::new(otklik::store::Store::open(dir.path()).unwrap());
    let status = otklik::services::status::provider(&cfg.status, &store).unwrap();
    let clock = std::sync::Arc::new(otklik::services::FixedClock::new(WORKDAY.parse().unwrap()));
    let e = Engine::with_parts(&cfg, nlu, graph, store, status, clock).unwrap();
    let t = e.handle("voice", "g", Input::Start).unwrap();
    assert!(t.text.contains("Тест"), "{}", t.text);
    let h = |i: Input| e.handle("voice", "g", i).unwrap().text;
    assert!(h(Input::Text("ага".into())).starts_with("Вы сказали да."));
    assert!(h(Input::Text("нет".into())).starts_with("Вы сказали нет."));
    assert!(h(Input::Dtmf("42".into())).starts_with("Вы нажали 42."));
    assert!(h(Input::Silence).starts_with("Тишина."));
    assert!(h(Input::Text("хочу ввести код".into())).contains("Назовите код"));
    assert!(h(Input::Text("12ab".into())).contains("только цифры"));
    assert!(h(Input::Dtmf("5555#".into())).starts_with("Код 5555 принят."));
    let t = e.handle("voice", "g", Input::Choice("go".into())).unwrap();
    assert!(t.text.contains("Чем могу помочь"), "{}", t.text);
}

#[test]
fn conversations_in_which_nobody_said_anything_expire() {
    let dir = tempfile::tempdir().unwrap();
    let (e, clock) = engine_at(dir.path(), WORKDAY);
    e.handle("web", "opened-and-left", Input::Start).unwrap();
    e.handle("web", "asked", Input::Start).unwrap();
    say(&e, "asked", "когда придёт пенсия");
    let key = |u: &str| otklik::store::SessionKey::new("web", u);
    let now = clock.now().as_second();
    assert_eq!(e.expire_silent(now + 3600, 86_400).unwrap(), 0, "too early");
    assert_eq!(e.expire_silent(now + 90_000, 86_400).unwrap(), 1);
    assert!(e.session(&key("opened-and-left")).unwrap().is_none());
    assert!(
        e.session(&key("asked")).unwrap().is_some(),
        "the other stays"
    );
}

/// The analytics log names no one: clients are keyed pseudonyms, the same
/// across conversations; a client who withdraws consent is re-keyed to a
/// pseudonym that links to no one, while the others' stay.
#[test]
fn a_withdrawal_unlinks_the_clients_log_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = engine_at(dir.path(), WORKDAY);
    for u in ["anna", "boris"] {
        e.handle("web", u, Input::Start).unwrap();
        say(&e, u, "как оформить единое пособие на ребенка");
        say(&e, u, "перезвоните мне пожалуйста");
        say(&e, u, "да, согласен");
        say(&e, u, "+7 999 111-22-33");
    }
    let secret = e.store.salt().unwrap();
    let pseudonym = |u: &str| otklik::analytics::client_pseudonym(&secret, &format!("web:{u}"));
    let log = e.store.log_entries().unwrap();
    let anna = log.iter().filter(|l| l.client == pseudonym("anna")).count();
    assert!(anna >= 4, "{log:?}");
    assert!(
        !log.iter()
            .any(|l| l.client.contains("anna") || l.text.contains("999")),
        "no id, no phone: {log:?}"
    );
    say(
        &e,
        "anna",
        "отзываю согласие на обработку персональных данных",
    );
    let log = e.store.log_entries().unwrap();
    assert_eq!(
        log.iter().filter(|l| l.client == pseudonym("anna")).count(),
        0,
        "{log:?}"
    );
    let boris = log
        .iter()
        .filter(|l| l.client == pseudonym("boris"))
        .count();
    assert!(boris >= 4);
    let unlinked: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|l| l.client != pseudonym("boris"))
        .map(|l| l.client.as_str())
        .collect();
    assert_eq!(
        unlinked.len(),
        1,
        "Anna's entries stay one client: {unlinked:?}"
    );
    assert_eq!(log.len(), anna + boris + 1, "nothing lost");
}

/// The three parts of the standard's rating: ease, satisfaction (asked
/// while the database is closed and opened again in between) and NPS end up
/// in the stored feedback and in the last analytics log entry.
#[test]
fn ease_satisfaction_and_nps_are_saved_into_feedback_and_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (e, _) = engine_at(dir.path(), WORKDAY);
        e.handle("web", "r1", Input::Start).unwrap();
        let t = say(&e, "r1", "спасибо, до свидания");
        assert!(t.text.contains("насколько легко"), "{}", t.text);
        let t = pick(&e, "r1", &t, 1); // «Скорее легко»
        assert!(t.text.contains("от 1 до 5"), "{}", t.text);
        let ids: Vec<&str> = t.choices.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["1", "2", "3", "4", "5", "skip"]);
    }
    let (e, _) = engine_at(dir.path(), WORKDAY);
    let t = say(&e, "r1", "шесть");
    assert!(
        t.text.contains("от 1 до 5"),
        "6 is out of range: {}",
        t.text
    );
    let t = say(&e, "r1", "пять");
    assert!(t.text.contains("от 0 до 10"), "{}", t.text);
    let t = say(&e, "r1", "10");
    assert!(t.text.contains("Спасибо за оценку"), "{}", t.text);
    let f = e.store.feedback().unwrap();
    assert_eq!(
        (f[0].ease, f[0].satisfaction, f[0].nps),
        (2, Some(5), Some(10))
    );
    let log = e.store.log_entries().unwrap();
    let rated: Vec<_> = log.iter().filter_map(|l| l.rating).collect();
    assert_eq!(
        rated,
        [otklik::analytics::Rating {
            ease: 2,
            satisfaction: Some(5),
            nps: Some(10)
        }]
    );
    assert!(log.iter().any(|l| l.events.iter().any(|e| e == "rating:2")));
}

/// What operators do reaches the analytics log too: the wait before the
/// first reply after a handoff (the operators' time to answer, once), a
/// pass to another operator, and a topic tagged.
#[test]
fn operators_first_reply_transfer_and_tag_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let (e, clock) = engine_at(dir.path(), WORKDAY);
    e.handle("web", "u", Input::Start).unwrap();
    say(&e, "u", "соедините с оператором");
    let key = otklik::store::SessionKey::new("web", "u");
    assert!(e.take(&key, "op1").unwrap().is_ok());
    clock.set(clock.now() + jiff::SignedDuration::from_secs(90));
    let keep = |_: &Turn| Ok(otklik::dialog::Keep::default());
    for text in ["Здравствуйте!", "Сейчас посмотрю."] {
        assert!(e.operator_reply(&key, "op1", text, &keep).unwrap().is_ok());
    }
    assert_eq!(e.transfer(&key, "op1", "op2").unwrap(), Ok(1));
    assert_eq!(
        e.tag_intent(&key, "op2", "pension_application").unwrap(),
        Ok(())
    );
    let log = e.store.log_entries().unwrap();
    let with = |ev: &str| -> Vec<&otklik::analytics::LogEntry> {
        log.iter()
            .filter(|l| l.events.iter().any(|x| x == ev))
            .collect()
    };
    let replies = with("operator_reply");
    assert_eq!(replies.len(), 1, "only the first reply: {log:?}");
    assert!(replies[0].answer_ms.unwrap() >= 90_000, "{:?}", replies[0]);
    assert_eq!(with("transfer").len(), 1);
    let tag = with("operator_tag");
    assert_eq!(tag[0].confirmed.as_deref(), Some("pension_application"));
    let conversation = &with("handoff")[0].conversation;
    assert!(
        [replies[0], with("transfer")[0], tag[0]]
            .iter()
            .all(|l| &l.conversation == conversation),
        "one conversation's pseudonym"
    );
}
