//! The operator console as an operator meets it, over real HTTP and
//! WebSockets: conversations named for people (the channel in words, the
//! segment's label, a short id; the topic by its title), the waiting clock
//! stopped once a conversation is taken, system lines that name operators
//! by name, and the citizen told when an operator joins and when another
//! one takes over (by name, or without it when the settings say so).

mod common;

use common::{is_bot, recv, send, start_server, until, wait_ready, ws, Server, Ws};
use serde_json::{json, Value};
use std::time::Duration;

/// A web chat citizen (`name`, in `segment`) who asked a question and then
/// for a person; returns the socket and the conversation's key.
async fn waiting_citizen(s: &Server, name: &str, segment: &str) -> (Ws, String) {
    let mut w = ws(&s.base, name).await;
    send(
        &mut w,
        json!({"type": "hello", "last_seq": 0, "segment": segment}),
    )
    .await;
    until(&mut w, is_bot).await;
    send(
        &mut w,
        json!({"type": "text", "id": "q1", "text": "мне не пришла пенсия в этом месяце"}),
    )
    .await;
    until(&mut w, is_bot).await;
    // Let the answer's follow-up (if any) arrive before the next message.
    while recv(&mut w, 1).await.is_some() {}
    send(
        &mut w,
        json!({"type": "text", "id": "q2", "text": "соедините с оператором"}),
    )
    .await;
    let got = until(&mut w, |v| {
        is_bot(v)
            && v["actions"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("handoff")))
    })
    .await;
    assert!(!got.is_empty());
    (w, format!("web:{}", common::issued(name)))
}

async fn queue_item(op: &reqwest::Client, s: &Server, session: &str) -> Value {
    let q: Value = op
        .get(format!("{}/api/v1/operator/queue", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    q["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["session"] == session)
        .unwrap_or_else(|| panic!("{session} is not in the queue: {q}"))
        .clone()
}

fn conv(s: &Server, session: &str, action: &str) -> String {
    format!(
        "{}/api/v1/operator/conversations/{session}/{action}",
        s.base
    )
}

/// The bot's messages until one with `text` arrives (which is returned).
async fn notice(w: &mut Ws, text: &str) -> Value {
    let got = until(w, |v| is_bot(v) && v["text"] == text).await;
    got.last().unwrap().clone()
}

#[tokio::test]
async fn the_console_names_conversations_for_people_and_stops_the_clock_when_taken() {
    let s = start_server(&[]);
    wait_ready(&s.base).await;
    let op1 = common::operator(&s, "op1").await;
    let op2 = common::operator(&s, "op2").await;
    let (_w, session) = waiting_citizen(&s, "console-senior", "senior").await;

    // 1. A short human label, the full key kept for the actions.
    let item = queue_item(&op1, &s, &session).await;
    let user = session.strip_prefix("web:").unwrap();
    let short: String = user
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    assert_eq!(item["title"], format!("Веб-чат · пенсионер · {short}"));
    assert!(!item["title"].as_str().unwrap().contains(user));
    assert_eq!(item["channel_label"], "Веб-чат");
    assert_eq!(item["segment_label"], "пенсионер");
    assert_eq!(item["short_id"], short);
    // The topic by its title in the knowledge base, not the intent's id.
    let intent = item["intent"].as_str().expect("an intent").to_string();
    let topic = item["topic"].as_str().expect("a topic").to_string();
    assert_ne!(topic, intent);
    if intent == "payment_delay" {
        assert_eq!(topic, "Выплата не пришла");
    }
    assert!(
        topic.chars().any(|c| matches!(c, 'а'..='я' | 'А'..='Я')),
        "the topic is in Russian: {topic}"
    );
    // The console's page shows those, not the raw key and id.
    let js = reqwest::get(format!("{}/operator.js", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(js.contains("item.title") && js.contains("item.topic"));
    assert!(!js.contains("'Разговор ' + item.session"));

    // 2. The clock runs while the conversation waits, and stops once taken.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = queue_item(&op1, &s, &session).await;
    assert!(
        later["waiting_seconds"].as_i64().unwrap() > item["waiting_seconds"].as_i64().unwrap(),
        "the clock runs while waiting: {item} then {later}"
    );
    let r = op1.post(conv(&s, &session, "take")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let taken: Value = r.json().await.unwrap();
    assert_eq!(taken["operator"], "op1");
    assert_eq!(taken["operator_name"], "Анна");
    let waited = taken["waiting_seconds"].as_i64().expect("the wait it had");
    assert!(waited >= later["waiting_seconds"].as_i64().unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let still = queue_item(&op1, &s, &session).await;
    assert_eq!(
        still["waiting_seconds"].as_i64(),
        Some(waited),
        "the clock stopped when the conversation was taken"
    );

    // 3. System lines name operators by name, not by login.
    let r = op1
        .post(conv(&s, &session, "transfer"))
        .json(&json!({"to": "op2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let item = queue_item(&op2, &s, &session).await;
    let system: Vec<&str> = item["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["who"].as_str().unwrap().starts_with("system"))
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert_eq!(system.len(), 2, "{system:?}");
    assert!(system[0].contains("Анна"), "{system:?}");
    assert!(system[1].contains("Борис"), "{system:?}");
    assert!(
        system
            .iter()
            .all(|t| !t.contains("op1") && !t.contains("op2")),
        "no logins in the lines: {system:?}"
    );
    assert_eq!(item["operator_name"], "Борис");
    assert_eq!(
        item["waiting_seconds"].as_i64(),
        Some(waited),
        "a transfer does not restart the clock"
    );
}

#[tokio::test]
async fn the_citizen_is_told_by_name_when_an_operator_joins_and_takes_over() {
    let s = start_server(&[]);
    wait_ready(&s.base).await;
    let op1 = common::operator(&s, "op1").await;
    let op2 = common::operator(&s, "op2").await;
    let (mut w, session) = waiting_citizen(&s, "console-named", "universal").await;

    let r = op1.post(conv(&s, &session, "take")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["client_told"], true);
    let joined = notice(&mut w, "К разговору подключился оператор: Анна.").await;
    assert_eq!(joined["from"], "bot");

    let r = op1
        .post(conv(&s, &session, "reply"))
        .json(&json!({"text": "Здравствуйте! Смотрю Ваш вопрос."}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = until(&mut w, |v| v["from"] == "operator").await;
    assert_eq!(got.last().unwrap()["operator"], "Анна");

    let r = op1
        .post(conv(&s, &session, "transfer"))
        .json(&json!({"to": "op2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["client_told"], true);
    let passed = notice(&mut w, "Теперь Вам отвечает другой оператор: Борис.").await;

    // Committed with the take and the transfer: a reconnecting chat replays
    // both notices, once each.
    let before = joined["seq"].as_u64().unwrap() - 1;
    let mut again = ws(&s.base, "console-named").await;
    send(&mut again, json!({"type": "hello", "last_seq": before})).await;
    let replay = until(&mut again, |v| v["seq"] == passed["seq"]).await;
    let texts: Vec<&str> = replay.iter().filter_map(|v| v["text"].as_str()).collect();
    for t in [
        "К разговору подключился оператор: Анна.",
        "Теперь Вам отвечает другой оператор: Борис.",
    ] {
        assert_eq!(
            texts.iter().filter(|x| **x == t).count(),
            1,
            "{t} in {texts:?}"
        );
    }
    // The bot's lines in the history, for the console and the REST API.
    let item = queue_item(&op2, &s, &session).await;
    let bot: Vec<&str> = item["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["who"] == "bot")
        .map(|h| h["text"].as_str().unwrap())
        .collect();
    assert!(bot.contains(&"К разговору подключился оператор: Анна."));
    assert!(bot.contains(&"Теперь Вам отвечает другой оператор: Борис."));
}

#[tokio::test]
async fn without_names_the_citizen_is_told_only_that_an_operator_answers() {
    let s = start_server(&[("OTKLIK_OPERATORS_SHOW_NAME_TO_CLIENT", "false".into())]);
    wait_ready(&s.base).await;
    let op1 = common::operator(&s, "op1").await;
    let (mut w, session) = waiting_citizen(&s, "console-anonymous", "family").await;

    let r = op1.post(conv(&s, &session, "take")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    notice(&mut w, "К разговору подключился оператор.").await;
    let r = op1
        .post(conv(&s, &session, "reply"))
        .json(&json!({"text": "Здравствуйте!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = until(&mut w, |v| v["from"] == "operator").await;
    assert_eq!(got.last().unwrap()["operator"], "Оператор");
    let r = op1
        .post(conv(&s, &session, "transfer"))
        .json(&json!({"to": "op2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut seen = until(&mut w, |v| {
        is_bot(v) && v["text"] == "Теперь Вам отвечает другой оператор."
    })
    .await;
    seen.extend(got);
    let all = seen.iter().map(Value::to_string).collect::<String>();
    assert!(
        !all.contains("Анна") && !all.contains("Борис"),
        "no operator's name reaches the citizen: {all}"
    );
    // The console still names them.
    let item = queue_item(&op1, &s, &session).await;
    assert_eq!(item["operator_name"], "Борис");
}
