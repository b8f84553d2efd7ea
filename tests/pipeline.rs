//! The shared turn pipeline against `otklik serve` on loopback: the REST
//! API closed to strangers and to other namespaces, the web chat's reply
//! surviving a crash on either side of the commit (exactly once, and a
//! resend never swallowed), and consent withdrawal reaching the web chat's
//! replay.

mod common;

use common::{
    drain, is_bot, send, start_server, until, wait_ready, ws, Server, Ws, ADMIN_TOKEN, CRM_KEY,
    PORTAL_KEY,
};
use serde_json::{json, Value};

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap_or(0)
}

#[tokio::test]
async fn the_rest_api_is_closed_to_strangers_and_to_other_namespaces() {
    let s = start_server(&[]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    let post = |key: Option<&str>, body: Value| {
        let mut r = c.post(format!("{}/api/v1/messages", s.base)).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send()
    };
    // The attack from the issue: an anonymous turn in a Telegram citizen's conversation.
    let body = json!({"user": "424242", "channel": "telegram", "text": "привет"});
    for key in [None, Some("not-a-key"), Some("")] {
        let r = post(key, body.clone()).await.unwrap();
        assert_eq!(r.status(), 401, "{key:?}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "unauthorized");
        assert!(e["error"]["message"].as_str().unwrap().contains("ключ"));
    }
    // With a key, the same body reaches only the integration's own namespace.
    let r = post(Some(PORTAL_KEY), body.clone()).await.unwrap();
    assert_eq!(r.status(), 200);
    let admin = |session: &str| {
        c.get(format!("{}/api/v1/conversations/{session}", s.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
    };
    assert_eq!(admin("telegram:424242").await.unwrap().status(), 404);
    let own: Value = admin("api:portal:424242")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(own["channel"], "api");
    let turns = own["turns"].as_u64().unwrap();
    // Another key's user of the same id is another conversation.
    let r = post(Some(CRM_KEY), json!({"user": "424242", "start": true}))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let own: Value = admin("api:portal:424242")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        own["turns"].as_u64().unwrap(),
        turns,
        "the portal's conversation is untouched"
    );
    assert_eq!(admin("api:crm:424242").await.unwrap().status(), 200);
    // A user id cannot climb out of the namespace.
    for user in ["web:client-0001", "portal:424242", ""] {
        let r = post(Some(CRM_KEY), json!({"user": user, "text": "привет"}))
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{user:?}");
    }
    // The voice style still applies on request (no links are read out).
    let t: Value = post(
        Some(PORTAL_KEY),
        json!({"user": "v1", "channel": "voice", "text": "как оформить единое пособие на ребенка"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(t["links"].as_array().unwrap().is_empty(), "{t}");
    // Reading conversations stays for admins and operators.
    let r = c
        .get(format!("{}/api/v1/conversations/api:portal:424242", s.base))
        .bearer_auth(PORTAL_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "an integration key is not the admin token");
    // The OpenAPI document declares both schemes and where they apply.
    let doc: Value = c
        .get(format!("{}/api/v1/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["admin_token"]["scheme"], "bearer", "{schemes}");
    assert_eq!(
        doc["paths"]["/api/v1/messages"]["post"]["security"][0]["api_key"],
        json!([])
    );
    assert!(doc["paths"]["/api/v1/classify"]["post"]["security"].is_null());
}

#[tokio::test]
async fn the_classifier_is_limited_per_address() {
    let s = start_server(&[("OTKLIK_HTTP_CLASSIFY_PER_MINUTE", "3".into())]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let r = c
            .post(format!("{}/api/v1/classify", s.base))
            .json(&json!({"text": "пенсия"}))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [200, 200, 200, 429, 429]);
}

/// A crash right after a client's message was committed: after the restart
/// the replay brings its echo and reply exactly once, and a resend of the
/// message is recognised (nothing runs twice).
/// A client greeted, then its first question sent to a server that aborts
/// at `fault`; returns the server restarted without the fault, the
/// greeting, and the question (to resend).
async fn crash_at(fault: &str, client: &str) -> (Server, Value, Value) {
    let s = start_server(&[("OTKLIK_FAULT", fault.into())]);
    wait_ready(&s.base).await;
    let mut w = ws(&s.base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    let greeting = until(&mut w, is_bot).await.pop().unwrap();
    let q = json!({"type": "text", "id": "m1", "text": "как оформить единое пособие на ребенка"});
    send(&mut w, q.clone()).await;
    let lost = drain(&mut w, 10).await;
    assert!(
        !lost.iter().any(|m| m["from"] == "bot"),
        "the server died before sending: {lost:?}"
    );
    let s = s.restart(&[]);
    wait_ready(&s.base).await;
    (s, greeting, q)
}

/// Reconnects and says hello after `greeting`: the socket and the replay.
async fn reconnect(s: &Server, client: &str, greeting: &Value) -> (Ws, Vec<Value>) {
    let mut w = ws(&s.base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": seq(greeting)})).await;
    let replay = drain(&mut w, 3).await;
    (w, replay)
}

/// A crash right after a client's message was committed: after the restart
/// the replay brings its echo and reply exactly once, and a resend of the
/// message is recognised (nothing runs twice).
#[tokio::test]
async fn a_web_reply_committed_before_a_crash_is_replayed_exactly_once() {
    let client = "crash-after-1";
    let (s, greeting, q) = crash_at("after_commit", client).await;
    let (mut w, replay) = reconnect(&s, client, &greeting).await;
    let echoes = replay
        .iter()
        .filter(|m| m["from"] == "client" && m["id"] == "m1")
        .count();
    let answers: Vec<&Value> = replay.iter().filter(|m| m["from"] == "bot").collect();
    assert_eq!(echoes, 1, "{replay:?}");
    assert_eq!(answers.len(), 1, "{replay:?}");
    assert!(answers[0]["text"]
        .as_str()
        .unwrap()
        .contains("Единое пособие"));
    // The widget resends what it never saw answered: not processed again.
    send(&mut w, q).await;
    assert!(
        drain(&mut w, 2).await.is_empty(),
        "a resend of a committed message runs nothing"
    );
}

/// A crash before a client's message was committed: nothing of it was kept,
/// so the resend after the restart is processed (not swallowed as seen).
#[tokio::test]
async fn a_web_message_lost_before_the_commit_is_processed_when_resent() {
    let client = "crash-before-1";
    let (s, greeting, q) = crash_at("before_commit", client).await;
    let (mut w, replay) = reconnect(&s, client, &greeting).await;
    assert!(
        replay.iter().all(|m| m["type"] == "welcome"),
        "nothing of the lost message was kept: {replay:?}"
    );
    send(&mut w, q).await;
    let got = until(&mut w, is_bot).await;
    assert!(got.iter().any(|m| m["from"] == "client" && m["id"] == "m1"));
    assert!(got.last().unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("Единое пособие"));
}

/// After «отзываю согласие», a reload replays the conversation without the
/// phone the client typed or the bot repeated back.
#[tokio::test]
async fn consent_withdrawal_reaches_the_web_chats_replay() {
    let s = start_server(&[]);
    wait_ready(&s.base).await;
    let client = "withdraw-0001";
    let mut w = ws(&s.base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    let steps: [(&str, &str); 7] = [
        ("t1", "перезвоните мне пожалуйста"),
        ("t2", "да, согласен"),
        ("t3", "+7 999 111-22-33"),
        ("t4", "завтра после 14"),
        ("t5", "пропустить"),
        ("t6", "да"),
        ("t7", "отзываю согласие на обработку персональных данных"),
    ];
    let mut last = Vec::new();
    for (id, text) in steps {
        send(&mut w, json!({"type": "text", "id": id, "text": text})).await;
        last = until(&mut w, is_bot).await;
    }
    assert!(
        last.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("Согласие отозвано"),
        "{last:?}"
    );
    let mut w = ws(&s.base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    let replay = drain(&mut w, 3).await;
    assert!(
        replay.len() > 10,
        "the conversation is replayed: {replay:?}"
    );
    for m in &replay {
        let t = format!("{} {}", m["text"], m["choices"]);
        assert!(
            !t.contains("999") && !t.contains("111-22-33"),
            "the phone is still in the replay: {t}"
        );
    }
}
