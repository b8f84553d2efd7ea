//! Several `otklik serve` processes on one PostgreSQL database (a throwaway
//! cluster, `pg/mod.rs`): a web client on one instance gets the reply an
//! operator typed on the other; one client's messages sent to both at once
//! are serialised; a kill -9 of an instance during web chats loses and
//! doubles no shown turn when the clients reconnect to the other; a kill -9
//! of the Telegram poller hands polling to the other instance, every update
//! processed once (the takeover time is printed); the database restarting
//! under load gives clear 503s and the instances recover by themselves.

mod common;
mod pg;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use common::{is_bot, recv, send, start_server_in, until, wait_ready, ws, Server};
use futures_util::SinkExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn env(url: &str, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut v: Vec<(&'static str, String)> = vec![
        ("OTKLIK_STORAGE_BACKEND", "postgres".into()),
        ("OTKLIK_STORAGE_URL", url.into()),
        ("OTKLIK_STORAGE_POOL_SIZE", "8".into()),
        ("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "1000".into()),
        (
            "OTKLIK_HTTP_MESSAGES_PER_ADDRESS_PER_MINUTE",
            "100000".into(),
        ),
    ];
    for (k, x) in extra {
        let k: &'static str = Box::leak(k.to_string().into_boxed_str());
        v.push((k, x.clone()));
    }
    v
}

fn instance(url: &str, extra: &[(&str, String)]) -> Server {
    start_server_in(tempfile::tempdir().unwrap(), &env(url, extra))
}

async fn api(base: &str, user: &str, text: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/messages"))
        .bearer_auth(common::PORTAL_KEY)
        .json(&json!({"user": user, "text": text}))
        .timeout(Duration::from_secs(30))
        .send()
        .await;
    match r {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => panic!("no answer from {base}: {e}"),
    }
}

#[tokio::test]
async fn two_instances_deliver_across_and_serialise_one_client() {
    let pg = pg::Pg::start();
    let url = pg.database("two");
    let a = instance(&url, &[]);
    let b = instance(&url, &[]);
    wait_ready(&a.base).await;
    wait_ready(&b.base).await;

    // A web client on A asks for a person; an operator signed in on B takes
    // the conversation and replies: the reply reaches the socket on A.
    let mut w = ws(&a.base, "across").await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    send(
        &mut w,
        json!({"type": "text", "id": "q1", "text": "соедините с оператором"}),
    )
    .await;
    until(&mut w, |v| {
        is_bot(v)
            && v["actions"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("handoff")))
    })
    .await;
    let session = format!("web:{}", common::issued("across"));
    let op = common::operator(&b, "op1").await;
    let conv = |action: &str| {
        format!(
            "{}/api/v1/operator/conversations/{session}/{action}",
            b.base
        )
    };
    let r = op.post(conv("take")).send().await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "B sees A's client in the queue and takes it"
    );
    let r = op
        .post(conv("reply"))
        .json(&json!({"text": "Здравствуйте! Это Анна с другого сервера."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = until(&mut w, |v| v["from"] == "operator").await;
    assert_eq!(
        got.last().unwrap()["text"],
        "Здравствуйте! Это Анна с другого сервера."
    );

    // One client's messages sent to both instances at once: each turn runs
    // on the state the other left, so the conversation keeps them all.
    let user = "both-at-once";
    let mut sent = Vec::new();
    for round in 0..4 {
        let (ta, tb) = (
            format!("пособие на ребёнка {round}"),
            format!("где мой МФЦ {round}"),
        );
        let (ra, rb) = tokio::join!(api(&a.base, user, &ta), api(&b.base, user, &tb));
        assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
        sent.extend([ta, tb]);
    }
    let s: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/conversations/api:portal:{user}", a.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kept = s.to_string();
    let lost: Vec<&String> = sent.iter().filter(|t| !kept.contains(t.as_str())).collect();
    assert!(
        lost.is_empty(),
        "turns ran at once and one overwrote the other: lost {lost:?}"
    );
}

/// Web chats on A; A is killed (-9) in the middle; the clients reconnect to
/// B and resume from the last message they showed: no message shown twice,
/// none missing, and every message sent is answered once.
#[tokio::test]
async fn a_kill_9_of_an_instance_moves_web_chats_to_the_other() {
    let pg = pg::Pg::start();
    let url = pg.database("failover");
    let mut a = instance(&url, &[]);
    let b = instance(&url, &[]);
    wait_ready(&a.base).await;
    wait_ready(&b.base).await;
    const CLIENTS: usize = 8;
    const MESSAGES: usize = 6;
    let texts = [
        "какие документы нужны для пособия",
        "как записаться на приём",
        "мне не пришла пенсия",
        "где ближайший МФЦ",
        "что такое Госуслуги",
        "спасибо",
    ];
    // seq -> message, as each client showed them
    let shown: Vec<Arc<Mutex<BTreeMap<u64, Value>>>> =
        (0..CLIENTS).map(|_| Arc::default()).collect();
    let mut socks = Vec::new();
    for (c, shown) in shown.iter().enumerate() {
        let mut w = ws(&a.base, &format!("fo{c}")).await;
        send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
        for v in until(&mut w, is_bot).await {
            if let Some(seq) = v["seq"].as_u64() {
                shown.lock().unwrap().insert(seq, v);
            }
        }
        socks.push(w);
    }
    let doubled = Arc::new(Mutex::new(Vec::new()));
    let kill_at = Instant::now() + Duration::from_millis(2500);
    let mut tasks = Vec::new();
    for (c, mut w) in socks.into_iter().enumerate() {
        let (shown, doubled) = (shown[c].clone(), doubled.clone());
        let b_base = b.base.clone();
        tasks.push(tokio::spawn(async move {
            let note = |v: &Value, shown: &Mutex<BTreeMap<u64, Value>>| {
                if let Some(seq) = v["seq"].as_u64() {
                    if shown.lock().unwrap().insert(seq, v.clone()).is_some() {
                        doubled.lock().unwrap().push(v.clone());
                    }
                }
            };
            let mut on_b = false;
            for (i, t) in texts.iter().enumerate().take(MESSAGES) {
                let id = format!("m{i}");
                // Sends, waits for the answer; on a lost socket reconnects to
                // B and sends the same message (same id) again.
                loop {
                    let m = json!({"type": "text", "id": id, "text": t}).to_string();
                    // a socket to the dead instance fails to send: reconnect
                    let _ = w.inner.send(Message::Text(m.into())).await;
                    let mut answered = false;
                    while let Some(v) = recv(&mut w, 8).await {
                        note(&v, &shown);
                        if is_bot(&v) {
                            answered = true;
                            // let any follow-up of the same turn arrive
                            while let Some(v) = recv(&mut w, 1).await {
                                note(&v, &shown);
                            }
                            break;
                        }
                    }
                    if answered {
                        break;
                    }
                    assert!(!on_b, "B did not answer");
                    on_b = true;
                    let last = shown.lock().unwrap().keys().max().copied().unwrap_or(0);
                    w = ws(&b_base, &format!("fo{c}")).await;
                    send(&mut w, json!({"type": "hello", "last_seq": last})).await;
                    // the welcome, then the replay of what was not shown
                    while let Some(v) = recv(&mut w, 2).await {
                        note(&v, &shown);
                    }
                    // the message was answered before the kill: it is in
                    // the replay, and a resend is a duplicate (no answer)
                    if shown
                        .lock()
                        .unwrap()
                        .values()
                        .any(|m| m["from"] == "client" && m["id"] == id.as_str())
                        && shown.lock().unwrap().values().last().is_some_and(is_bot)
                    {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            on_b
        }));
    }
    tokio::time::sleep_until(kill_at.into()).await;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let mut moved = 0;
    for t in tasks {
        moved += t.await.unwrap() as usize;
    }
    assert_eq!(moved, CLIENTS, "every client was on A when it died");
    assert!(
        doubled.lock().unwrap().is_empty(),
        "shown twice: {:?}",
        doubled.lock().unwrap()
    );
    for (c, shown) in shown.iter().enumerate() {
        let shown = shown.lock().unwrap();
        let seqs: Vec<u64> = shown.keys().copied().collect();
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, want, "client {c}: a message missing");
        let mine: Vec<&Value> = shown.values().filter(|m| m["from"] == "client").collect();
        assert_eq!(mine.len(), MESSAGES, "client {c}: each message kept once");
    }
}

/// A Bot API double both instances poll: updates by offset, and the
/// replies sent, with the time of each getUpdates.
#[derive(Default)]
struct Bot {
    updates: Vec<Value>,
    polls: Vec<Instant>,
    /// chat id -> texts sent to it
    sent: BTreeMap<i64, Vec<String>>,
    next: i64,
}

async fn bot_api(
    State(f): State<Arc<Mutex<Bot>>>,
    Path((_bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    let method = method.to_lowercase();
    if method == "getupdates" {
        let offset = body["offset"].as_i64().unwrap_or(0);
        for _ in 0..5 {
            {
                let mut g = f.lock().unwrap();
                g.polls.push(Instant::now());
                let ups: Vec<Value> = g
                    .updates
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap() >= offset)
                    .take(5)
                    .cloned()
                    .collect();
                if !ups.is_empty() {
                    return Json(json!({"ok": true, "result": ups})).into_response();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        return Json(json!({"ok": true, "result": []})).into_response();
    }
    let mut g = f.lock().unwrap();
    let result = match method.as_str() {
        "sendmessage" => {
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let text = body["text"].as_str().unwrap_or("").to_string();
            g.sent.entry(chat).or_default().push(text.clone());
            g.next += 1;
            json!({"message_id": 1000 + g.next, "date": 1764140000,
                   "chat": {"id": chat, "type": "private", "first_name": "Иван"},
                   "from": {"id": 777, "is_bot": true, "first_name": "Помощник"}, "text": text})
        }
        "getme" => {
            json!({"id": 777, "is_bot": true, "first_name": "Помощник", "username": "otklik_bot"})
        }
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result})).into_response()
}

/// Chats send updates while A polls; A is killed (-9); B takes over from
/// the persisted offset. Every update is processed exactly once (each
/// chat's turn is in the log once) and answered.
#[tokio::test]
async fn a_kill_9_of_the_telegram_poller_hands_polling_to_the_other_instance() {
    let pg = pg::Pg::start();
    let url = pg.database("telegram");
    let f: Arc<Mutex<Bot>> = Arc::default();
    let app = Router::new()
        .route("/{bot}/{method}", post(bot_api))
        .with_state(f.clone());
    let api_url = format!("http://{}", common::serve_in_background(app));
    let tg = [
        ("OTKLIK_TELEGRAM_TOKEN", "123456:TEST-token".to_string()),
        ("OTKLIK_TELEGRAM_API_URL", api_url),
        ("OTKLIK_TELEGRAM_POLL_TIMEOUT_S", "1".to_string()),
    ];
    let mut a = instance(&url, &tg);
    wait_ready(&a.base).await;
    let start = Instant::now();
    while f.lock().unwrap().polls.is_empty() {
        assert!(start.elapsed() < Duration::from_secs(30), "A never polled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = instance(&url, &tg);
    wait_ready(&b.base).await;
    const CHATS: i64 = 30;
    let push = |i: i64| {
        let mut g = f.lock().unwrap();
        let id = g.updates.len() as i64 + 1;
        let chat = 7_000_000 + i;
        g.updates.push(
            json!({"update_id": id, "message": {"message_id": 10 + id, "date": 1764140000,
            "chat": {"id": chat, "type": "private", "first_name": "Иван"},
            "from": {"id": chat, "is_bot": false, "first_name": "Иван"},
            "text": "как получить пособие на ребёнка"}}),
        );
    };
    let answered = |f: &Mutex<Bot>| f.lock().unwrap().sent.len() as i64;
    // Half the chats, then a kill -9 while the rest arrive.
    for i in 0..CHATS / 2 {
        push(i);
    }
    let t0 = Instant::now();
    while answered(&f) < 5 {
        assert!(t0.elapsed() < Duration::from_secs(60), "A answers nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in CHATS / 2..CHATS {
        push(i);
    }
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    let mut took = None;
    while took.is_none() {
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "B never took over"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        took = f
            .lock()
            .unwrap()
            .polls
            .iter()
            .find(|t| **t > killed)
            .map(|t| t.duration_since(killed));
    }
    let took = took.unwrap();
    eprintln!(
        "telegram takeover: B polled {:.2} s after the kill -9 of A",
        took.as_secs_f64()
    );
    let t0 = Instant::now();
    while answered(&f) < CHATS {
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "only {} of {CHATS} chats answered",
            answered(&f)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Exactly once: every chat's update is in the log as many times as any
    // other's (one turn each), none twice.
    let per_client = pg.psql(
        "telegram",
        "SELECT count(*) FROM log GROUP BY client ORDER BY 1",
    );
    let counts: BTreeSet<&str> = per_client.lines().collect();
    assert_eq!(
        per_client.lines().count() as i64,
        CHATS,
        "one client per chat: {per_client}"
    );
    assert_eq!(
        counts.len(),
        1,
        "an update was processed twice: {per_client}"
    );
    assert_eq!(
        pg.psql(
            "telegram",
            "SELECT count(*) FROM seen WHERE marker LIKE 'telegram:%'"
        ),
        CHATS.to_string(),
        "every update marked once"
    );
    drop(b);
}

/// The database stops under load and starts again: the API answers 503
/// with a clear message meanwhile (no 500, no panic), and both instances
/// answer again by themselves.
#[tokio::test]
async fn a_database_restart_under_load_gives_503_and_recovers() {
    let pg = pg::Pg::start();
    let url = pg.database("restart");
    let mut a = instance(&url, &[]);
    let mut b = instance(&url, &[]);
    wait_ready(&a.base).await;
    wait_ready(&b.base).await;
    assert_eq!(api(&a.base, "r0", "как получить пособие").await.0, 200);
    // Load: four clients on each instance, one message after another.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let codes = Arc::new(Mutex::new(Vec::<(u16, Value)>::new()));
    let mut load = Vec::new();
    for i in 0..8 {
        let base = if i % 2 == 0 {
            a.base.clone()
        } else {
            b.base.clone()
        };
        let (stop, codes) = (stop.clone(), codes.clone());
        load.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = api(
                    &base,
                    &format!("load{i}"),
                    &format!("как получить пособие {n}"),
                )
                .await;
                codes.lock().unwrap().push(r);
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    pg.start_server();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    let codes = std::mem::take(&mut *codes.lock().unwrap());
    let mut by = BTreeMap::<u16, usize>::new();
    for (c, body) in codes.iter() {
        *by.entry(*c).or_default() += 1;
        if *c == 503 {
            assert_eq!(body["error"]["code"], "unavailable", "{body}");
            let m = body["error"]["message"].as_str().unwrap_or("");
            assert!(m.contains("временно недоступен"), "{m}");
        }
    }
    eprintln!("database restart under load: answers by status {by:?}");
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        vec![200, 503],
        "answered, then 503 while the database was down, nothing else"
    );
    assert_eq!(
        codes.last().unwrap().0,
        200,
        "answering again after the restart"
    );
    for s in [&a, &b] {
        let t0 = Instant::now();
        loop {
            let (code, _) = api(&s.base, "after", "как получить пособие").await;
            if code == 200 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no recovery: {code}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "database restart: both instances answer {:.1} s after the start",
        started.elapsed().as_secs_f64()
    );
    for s in [&mut a, &mut b] {
        assert!(s.child.try_wait().unwrap().is_none(), "an instance died");
    }
}

/// `otklik migrate` applies the migrations alone, once; a second run has
/// nothing to do; sled settings are refused with what to set.
#[test]
fn otklik_migrate_applies_the_migrations_once() {
    let pg = pg::Pg::start();
    let url = pg.database("migrate");
    let run = |backend: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_otklik"))
            .arg("migrate")
            .env("OTKLIK_STORAGE_BACKEND", backend)
            .env("OTKLIK_STORAGE_URL", &url)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, said) = run("postgres");
    assert!(ok && said.contains("applied migrations: [1]"), "{said}");
    assert!(pg.psql("migrate", "SELECT count(*) FROM sessions") == "0");
    let (ok, said) = run("postgres");
    assert!(ok && said.contains("up to date"), "{said}");
    let (ok, said) = run("sled");
    assert!(!ok && said.contains("storage.url"), "{said}");
}
