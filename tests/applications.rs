//! The HTTP applications provider against a real server on a loopback port:
//! the single allowance filled in through the engine is POSTed as JSON
//! (no client identity in it), the number the server answers is told to
//! the client and kept; a server that fails or is too slow loses nothing:
//! the client gets a clear message and a draft code. Also a draft that
//! expired is refused and deleted.

mod common;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use otklik::dialog::{Engine, Input};
use otklik::services::applications::{Application, Draft};
use otklik::services::{Clock, FixedClock};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Seen = Arc<Mutex<Vec<Value>>>;

/// The ministry's system: keeps what it is sent and answers `mode`.
fn ministry(mode: &'static str) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/applications",
            post(
                move |State(seen): State<Seen>, Json(body): Json<Value>| async move {
                    seen.lock().unwrap().push(body);
                    match mode {
                        "ok" => (StatusCode::OK, Json(json!({"number": "900123"}))),
                        "slow" => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            (StatusCode::OK, Json(json!({"number": "900124"})))
                        }
                        _ => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({"error": "down"})),
                        ),
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let addr = common::serve_in_background(app);
    (format!("http://{addr}/applications"), seen)
}

fn engine(data: &std::path::Path, url: &str) -> (Engine, Arc<FixedClock>) {
    let mut cfg = common::config_with_data(data);
    cfg.applications.provider = "http".into();
    cfg.applications.url = url.into();
    cfg.applications.timeout_ms = 500;
    let clock = Arc::new(FixedClock::new(common::WORKDAY.parse().unwrap()));
    let e = Engine::new(&cfg, common::shared_nlu(), clock.clone()).unwrap();
    (e, clock)
}

/// Fills the single allowance up to its summary; returns the summary.
fn fill(e: &Engine, user: &str) -> String {
    let mut last = String::new();
    for t in [
        "подать заявление на единое пособие",
        "да",
        "Иванова Анна Петровна",
        "05.05.1990",
        "89123456789",
        "112-233-445 95",
        "500100732259",
        "Иванов Пётр Сергеевич",
        "21.12.2019",
        "044525225",
        "40702810038000017240",
    ] {
        last = e.handle("web", user, Input::Text(t.into())).unwrap().text;
    }
    assert!(last.contains("Проверьте данные"), "{last}");
    last
}

#[test]
fn the_http_provider_posts_json_and_tells_the_number() {
    let (url, seen) = ministry("ok");
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = engine(dir.path(), &url);
    fill(&e, "u1");
    let t = e.handle("web", "u1", Input::Text("да".into())).unwrap();
    assert!(t.text.contains("Номер заявления: 900123"), "{}", t.text);
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let body = &got[0];
    assert_eq!(body["service"], "single_allowance");
    assert_eq!(body["fields"]["snils"], "112-233-445 95");
    assert_eq!(body["fields"]["birth_date"], "05.05.1990");
    assert_eq!(body["fields"]["account"], "40702810038000017240");
    assert_eq!(body["fields"]["inn"], "500100732259");
    assert!(body["request_id"].as_str().is_some_and(|r| r.len() == 24));
    // the client's identity on the channel is not sent
    assert!(!body.to_string().contains("web:u1"), "{body}");
    // the application is kept under the ministry's number
    let a: Application = e
        .store
        .record_of("application", "900123")
        .unwrap()
        .expect("kept");
    assert_eq!(a.user, "web:u1");
    assert_eq!(a.fields["child_name"], "Иванов Пётр Сергеевич");
}

#[test]
fn a_failing_or_slow_ministry_loses_nothing() {
    for mode in ["down", "slow"] {
        let (url, seen) = ministry(mode);
        let dir = tempfile::tempdir().unwrap();
        let (e, _) = engine(dir.path(), &url);
        fill(&e, "u2");
        let started = Instant::now();
        let t = e.handle("web", "u2", Input::Text("да".into())).unwrap();
        // bounded by the timeout, not by the server
        assert!(started.elapsed() < Duration::from_secs(2), "{mode}");
        assert!(
            t.text.contains("не получается отправить") && t.text.contains("Код черновика"),
            "{mode}: {}",
            t.text
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "{mode}");
        assert!(e.store.records("application", "").unwrap().is_empty());
        // what was filled is in the draft
        let drafts: Vec<(String, Draft)> = e.store.records_of("draft", "").unwrap();
        assert_eq!(drafts.len(), 1, "{mode}");
        let d = &drafts[0].1;
        assert_eq!(d.user, "web:u2");
        assert_eq!(d.fields["snils"], "112-233-445 95");
        assert_eq!(d.fields.len(), 9);
        assert!(t.text.contains(&d.code[..4]), "{}", t.text);
    }
}

#[test]
fn an_expired_draft_is_refused_and_deleted() {
    let (url, _) = ministry("ok");
    let dir = tempfile::tempdir().unwrap();
    let (e, clock) = engine(dir.path(), &url);
    for t in [
        "подать заявление на единое пособие",
        "да",
        "Иванова Анна Петровна",
        "сохранить черновик",
    ] {
        e.handle("telegram", "u3", Input::Text(t.into())).unwrap();
    }
    let drafts: Vec<(String, Draft)> = e.store.records_of("draft", "").unwrap();
    let code = drafts[0].0.clone();
    // 31 days on: past `draft_days` (30)
    clock.set(clock.now() + jiff::SignedDuration::from_hours(31 * 24));
    let t = e
        .handle(
            "web",
            "u3",
            Input::Text(format!("продолжить заявление {code}")),
        )
        .unwrap();
    assert!(t.text.contains("хранился слишком долго"), "{}", t.text);
    assert!(e.store.records("draft", "").unwrap().is_empty());
    assert!(e.store.records("draft_of", "").unwrap().is_empty());
}

#[test]
fn the_retention_sweep_removes_expired_drafts_only() {
    let dir = tempfile::tempdir().unwrap();
    let (e, clock) = engine(dir.path(), "http://127.0.0.1:9/applications");
    let save = |user: &str| {
        for t in [
            "подать заявление на единое пособие",
            "да",
            "Иванова Анна Петровна",
            "сохранить черновик",
        ] {
            e.handle("web", user, Input::Text(t.into())).unwrap();
        }
    };
    save("old");
    clock.set(clock.now() + jiff::SignedDuration::from_hours(20 * 24));
    save("new");
    assert_eq!(e.store.records("draft", "").unwrap().len(), 2);
    // 31 days after the first: only it is past 30 days
    let now = (clock.now() + jiff::SignedDuration::from_hours(11 * 24)).as_second();
    let n = otklik::services::applications::sweep_drafts(&*e.store, now, 30).unwrap();
    assert_eq!(n, 1);
    let left: Vec<(String, Draft)> = e.store.records_of("draft", "").unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].1.user, "web:new");
    let owners: Vec<String> = e
        .store
        .records("draft_of", "")
        .unwrap()
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(owners, vec!["web:new".to_string()]);
}

#[test]
fn on_voice_the_draft_code_and_number_are_said_digit_by_digit() {
    let (url, _) = ministry("ok");
    let dir = tempfile::tempdir().unwrap();
    let (e, _) = engine(dir.path(), &url);
    let mut last = String::new();
    for t in [
        "подать заявление на единое пособие",
        "да",
        "Иванова Анна Петровна",
        "сохранить черновик",
    ] {
        last = e.handle("voice", "v1", Input::Text(t.into())).unwrap().text;
    }
    let drafts: Vec<(String, Draft)> = e.store.records_of("draft", "").unwrap();
    let code = &drafts[0].0;
    let digits = |t: &str| t.chars().filter(char::is_ascii_digit).count();
    // only «30 дней» is in digits: the code is words, four and four
    assert_eq!(digits(&last), 2, "{last}");
    let words = [
        "ноль",
        "один",
        "два",
        "три",
        "четыре",
        "пять",
        "шесть",
        "семь",
        "восемь",
        "девять",
    ];
    let said: Vec<&str> = code
        .chars()
        .map(|c| words[c.to_digit(10).unwrap() as usize])
        .collect();
    let want = format!("{}, {}", said[..4].join(" "), said[4..].join(" "));
    assert!(last.contains(&want), "{want:?} in {last}");
}
