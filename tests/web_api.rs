//! `otklik serve` end to end over real HTTP and WebSockets on loopback: the
//! REST API and its errors, OpenAPI, metrics, the admin reload, the operator
//! API with its sign-in, and the web chat protocol (welcome, replay after a
//! reconnect, de-duplicated resends, limits), and a graceful SIGTERM.

mod common;

use common::{
    is_bot, recv, send, start_server, until, wait_ready, ws, ADMIN_TOKEN, OPERATOR_PASSWORD,
    PORTAL_KEY,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn web_chat_protocol_replay_dedup_and_limits() {
    let s = start_server(&[("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "8".into())]);
    wait_ready(&s.base).await;
    let client = "client-0001";
    let mut w = ws(&s.base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    let first = until(&mut w, is_bot).await;
    assert_eq!(first[0]["type"], "welcome");
    assert_eq!(first[0]["voice"], true);
    let greeting = first.last().unwrap();
    assert!(greeting["text"].as_str().unwrap().contains("Здравствуйте"));
    assert!(
        !greeting["text"].as_str().unwrap().contains('👋'),
        "no emoji on the web"
    );
    let seq1 = greeting["seq"].as_u64().unwrap();

    send(
        &mut w,
        json!({"type": "text", "id": "m1", "text": "как оформить единое пособие на ребенка"}),
    )
    .await;
    let got = until(&mut w, is_bot).await;
    assert!(
        got.iter().any(|m| m["from"] == "client" && m["id"] == "m1"),
        "echo of the client's message: {got:?}"
    );
    let answer = got.last().unwrap();
    assert!(answer["text"].as_str().unwrap().contains("Единое пособие"));
    assert_eq!(answer["choices"][0]["id"], "yes");
    let last_seq = answer["seq"].as_u64().unwrap();
    assert!(last_seq > seq1);

    // A resend of the same id (after a network drop) is not processed twice.
    send(
        &mut w,
        json!({"type": "text", "id": "m1", "text": "как оформить единое пособие на ребенка"}),
    )
    .await;
    assert!(
        recv(&mut w, 2).await.is_none(),
        "a duplicate must not produce messages"
    );

    // Drop the connection; send from a new one; reconnect with the last seq seen.
    drop(w);
    let mut w2 = ws(&s.base, client).await;
    send(&mut w2, json!({"type": "hello", "last_seq": last_seq})).await;
    let welcome = recv(&mut w2, 10).await.unwrap();
    assert_eq!(welcome["type"], "welcome");
    assert!(
        recv(&mut w2, 2).await.is_none(),
        "nothing was missed, nothing is replayed"
    );
    send(
        &mut w2,
        json!({"type": "choice", "id": "m2", "choice": "no", "label": "Нет"}),
    )
    .await;
    let got = until(&mut w2, is_bot).await;
    assert!(got.last().unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("другими словами"));
    // A page reload replays the whole conversation in order, each message once.
    let mut w3 = ws(&s.base, client).await;
    send(&mut w3, json!({"type": "hello", "last_seq": 0})).await;
    let mut seqs = Vec::new();
    while let Some(v) = recv(&mut w3, 2).await {
        if v["type"] == "msg" {
            seqs.push(v["seq"].as_u64().unwrap());
        }
    }
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "in order, no duplicates");
    assert_eq!(
        seqs.len(),
        5,
        "greeting, echo, answer, echo, rephrase: {seqs:?}"
    );

    // Limits: too long, malformed, rate.
    send(
        &mut w3,
        json!({"type": "text", "id": "long", "text": "а".repeat(2500)}),
    )
    .await;
    let e = recv(&mut w3, 5).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_str()),
        (Some("error"), Some("too_long"), Some("long"))
    );
    w3.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(recv(&mut w3, 5).await.unwrap()["code"], "bad_message");
    let mut limited = false;
    for i in 0..12 {
        send(
            &mut w3,
            json!({"type": "text", "id": format!("r{i}"), "text": "пенсия"}),
        )
        .await;
    }
    while let Some(v) = recv(&mut w3, 3).await {
        if v["code"] == "rate_limited" {
            assert!(v["message"].as_str().unwrap().contains("Подождите"));
            limited = true;
        }
    }
    assert!(limited, "the rate limit answers with a clear error");

    // The identity is the server's: none travels in the URL.
    assert_eq!(common::issued(client).len(), 32);
}

#[tokio::test]
async fn rest_api_openapi_metrics_and_reload() {
    let dialogs = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir("dialogs").unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dialogs.path().join(f.file_name().unwrap())).unwrap();
    }
    let s = start_server(&[(
        "OTKLIK_DIALOG_DIALOGS_DIR",
        dialogs.path().display().to_string(),
    )]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    let post = |body: Value| {
        c.post(format!("{}/api/v1/messages", s.base))
            .bearer_auth(PORTAL_KEY)
            .json(&body)
            .send()
    };
    let r = post(json!({"user": "rest1", "start": true})).await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert!(t["text"].as_str().unwrap().contains("Здравствуйте"));
    let t: Value = post(json!({"user": "rest1", "text": "пенсия"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["intent"], "pension_application");
    let t: Value = post(json!({"user": "rest1", "choice": "no"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(t["text"].as_str().unwrap().contains("другими словами"));
    for (body, code) in [
        (
            json!({"user": "rest1", "text": "a", "choice": "yes"}),
            "bad_input",
        ),
        (
            json!({"user": "rest1", "channel": "fax", "text": "a"}),
            "bad_channel",
        ),
        (
            json!({"user": "rest1", "text": "a", "segment": "martian"}),
            "bad_segment",
        ),
    ] {
        let r = post(body).await.unwrap();
        assert_eq!(r.status(), 422);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
    }
    let r = post(json!({"user": "rest1", "txt": "a"})).await.unwrap();
    assert_eq!(r.status(), 400, "unknown fields are refused");

    let api: Value = c
        .get(format!("{}/api/v1/openapi.json", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(api["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/messages",
        "/api/v1/classify",
        "/api/v1/admin/reload",
        "/readyz",
    ] {
        assert!(api["paths"][p].is_object(), "{p} missing in OpenAPI");
    }
    let m = common::metrics(&s.base).await;
    // The REST API is a channel of its own (its conversations are api:…).
    assert!(m.contains("otklik_turns_total{channel=\"api\"} 3"), "{m}");
    assert!(
        m.contains("otklik_decisions_total{decision=\"answer\"}"),
        "{m}"
    );
    assert!(m.contains("otklik_turn_latency_seconds_bucket"), "{m}");

    // Reading a conversation needs the admin token (or an operator).
    // (an integration's conversations live in its own namespace)
    let url = format!("{}/api/v1/conversations/api:portal:rest1", s.base);
    assert_eq!(c.get(&url).send().await.unwrap().status(), 401);
    let conv: Value = c
        .get(&url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(conv["history"].as_array().unwrap().len() >= 5);

    // Reload: refused without the token; a broken graph is reported and the old one stays.
    let reload = || c.post(format!("{}/api/v1/admin/reload", s.base));
    assert_eq!(reload().send().await.unwrap().status(), 401);
    assert_eq!(
        reload().bearer_auth("wrong").send().await.unwrap().status(),
        401
    );
    let main = dialogs.path().join("main.yaml");
    let text = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        text.replace(
            "    next: solved\n\n  solved:",
            "    next: nowhere\n\n  solved:",
        ),
    )
    .unwrap();
    let r = reload().bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.json::<Value>().await.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nowhere"));
    let t: Value = post(json!({"user": "rest2", "text": "пенсия"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["node"], "solved", "the old graph still serves");
    std::fs::write(
        &main,
        text.replace("Ваш вопрос решён?", "Получилось решить вопрос?"),
    )
    .unwrap();
    let r = reload().bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = post(json!({"user": "rest3", "text": "пенсия"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        t["text"]
            .as_str()
            .unwrap()
            .contains("Получилось решить вопрос?"),
        "the new graph serves: {t}"
    );
}

#[tokio::test]
async fn operators_sign_in_take_reply_and_the_client_sees_it() {
    let s = start_server(&[]);
    wait_ready(&s.base).await;
    let anon = reqwest::Client::new();
    let r = anon
        .get(format!("{}/api/v1/operator/queue", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let login = |c: &reqwest::Client, who: &str, pw: &str| {
        c.post(format!("{}/api/v1/operator/login", s.base))
            .json(&json!({"login": who, "password": pw}))
            .send()
    };
    let op1 = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let op2 = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let r = login(&op1, "op1", "wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["message"],
        "Неверный логин или пароль."
    );
    let r = login(&op1, "op1", OPERATOR_PASSWORD).await.unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert_eq!(
        login(&op2, "op2", OPERATOR_PASSWORD)
            .await
            .unwrap()
            .status(),
        200
    );

    // A citizen in the web chat asks for a person.
    let mut w = ws(&s.base, "citizen-001").await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    send(
        &mut w,
        json!({"type": "text", "id": "a1", "text": "соедините с оператором"}),
    )
    .await;
    let got = until(&mut w, is_bot).await;
    assert!(got.last().unwrap()["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("handoff")));

    let q: Value = op1
        .get(format!("{}/api/v1/operator/queue", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = &q["items"][0];
    let session = format!("web:{}", common::issued("citizen-001"));
    assert_eq!(item["session"], session);
    assert_eq!(item["channel"], "web");
    assert!(item["history"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["text"] == "соедините с оператором"));
    let conv = format!("{}/api/v1/operator/conversations/{session}", s.base);
    assert_eq!(
        op1.post(format!("{conv}/take"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = op2.post(format!("{conv}/take")).send().await.unwrap();
    assert_eq!(r.status(), 409, "no two operators on one conversation");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "taken");
    let r = op1
        .post(format!("{conv}/reply"))
        .json(&json!({"text": "Здравствуйте! Я Анна, чем помочь?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let got = until(&mut w, |v| v["from"] == "operator").await;
    let m = got.last().unwrap();
    assert_eq!(m["text"], "Здравствуйте! Я Анна, чем помочь?");
    assert_eq!(m["operator"], "Анна");
    // The bot is silent while a person holds the conversation.
    send(
        &mut w,
        json!({"type": "text", "id": "a2", "text": "мне нужна справка"}),
    )
    .await;
    let got = until(&mut w, |v| v["from"] == "client" && v["id"] == "a2").await;
    assert!(got.iter().all(|v| v["from"] != "bot"));
    assert!(
        recv(&mut w, 2).await.is_none(),
        "no bot reply while an operator holds it"
    );
    // Transfers: two at most.
    let t = |c: &reqwest::Client, to: &str| {
        c.post(format!("{conv}/transfer"))
            .json(&json!({"to": to}))
            .send()
    };
    assert_eq!(t(&op1, "op2").await.unwrap().status(), 200);
    assert_eq!(t(&op2, "op1").await.unwrap().status(), 200);
    let r = t(&op1, "op2").await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "transfer_limit"
    );
    // Back to the bot: it asks whether the question is solved.
    assert_eq!(
        op1.post(format!("{conv}/release"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // after the notice that the operator took over, the bot asks again
    let got = until(&mut w, |v| {
        is_bot(v)
            && v["text"]
                .as_str()
                .is_some_and(|t| t.contains("Ваш вопрос решён?"))
    })
    .await;
    assert!(got.last().unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("Ваш вопрос решён?"));
    let q: Value = op1
        .get(format!("{}/api/v1/operator/queue", s.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(q["items"].as_array().unwrap().len(), 0);
    for p in ["callbacks", "appointments", "operators", "me"] {
        assert_eq!(
            op1.get(format!("{}/api/v1/operator/{p}", s.base))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{p}"
        );
        assert_eq!(
            anon.get(format!("{}/api/v1/operator/{p}", s.base))
                .send()
                .await
                .unwrap()
                .status(),
            401,
            "{p}"
        );
    }
    // A restart signs nobody out; signing out ends only that sign-in.
    let s = s.restart(&[]);
    wait_ready(&s.base).await;
    let me = |c: &reqwest::Client| c.get(format!("{}/api/v1/operator/me", s.base)).send();
    let r = me(&op1).await.unwrap();
    assert_eq!(r.status(), 200, "still signed in after the restart");
    assert_eq!(r.json::<Value>().await.unwrap()["login"], "op1");
    let r = op1
        .post(format!("{}/api/v1/operator/logout", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(me(&op1).await.unwrap().status(), 401, "signed out");
    assert_eq!(
        me(&op2).await.unwrap().status(),
        200,
        "the other one is not"
    );
}

#[tokio::test]
async fn sigterm_finishes_and_flushes() {
    let mut s = start_server(&[]);
    wait_ready(&s.base).await;
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/api/v1/messages", s.base))
        .bearer_auth(PORTAL_KEY)
        .json(&json!({"user": "term", "text": "пенсия"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // a socket stays open: shutdown must close it, not wait for it
    let mut w = ws(&s.base, "term-socket").await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w, is_bot).await;
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the server did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}");
    let store: std::sync::Arc<dyn otklik::store::Storage> =
        std::sync::Arc::new(otklik::store::Store::open(s.data_path()).unwrap());
    let key = otklik::store::SessionKey::new("api", "portal:term");
    let sess: Option<otklik::dialog::session::Session> = store.session(&key).unwrap();
    assert_eq!(sess.unwrap().intent.as_deref(), Some("pension_application"));
}

/// A voice message: its header, then its audio as one binary message.
async fn voice(w: &mut common::Ws, id: &str, rate: u32, audio: Vec<u8>) {
    send(w, json!({"type": "voice", "id": id, "rate": rate})).await;
    w.send(Message::Binary(audio.into())).await.unwrap();
}

/// 16-bit little-endian samples, as the widget sends them.
fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

/// Whether the `too_large` error came, and the close code that followed.
async fn error_and_close(w: &mut common::Ws) -> (bool, Option<u16>) {
    let mut too_large = false;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), w.next()).await {
        match m {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                too_large |= v["code"] == "too_large";
            }
            Ok(Message::Close(f)) => return (too_large, f.map(|f| u16::from(f.code))),
            _ => break,
        }
    }
    (too_large, None)
}

/// The next error on the socket (skipping nothing else: it must come next).
async fn error_of(w: &mut common::Ws) -> Value {
    let e = recv(w, 30).await.expect("an answer");
    assert_eq!(e["type"], "error", "{e}");
    assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    e
}

/// The voice button's protocol: real Russian speech (festival) over the
/// real socket is recognised by Whisper, echoed as the citizen's message and
/// answered by the booking flow; bad, too long, silent and oversized audio
/// each get a clear error and lose nothing; voice messages count in the
/// conversation's rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_chat_voice_messages_are_recognised_answered_and_bounded() {
    let s = start_server(&[("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "10".into())]);
    wait_ready(&s.base).await;
    common::speech_ready(&s.base).await;
    let client = "voice-client-1";
    let mut w = ws(&s.base, client).await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    let first = until(&mut w, is_bot).await;
    assert_eq!(first[0]["voice"], true, "{:?}", first[0]);
    let max_s = first[0]["voice_max_seconds"].as_u64().unwrap();
    assert_eq!(max_s, 20);

    // «Хочу записаться на приём», said: the words come back as the
    // citizen's own message, then the booking flow asks for consent.
    let phrase = common::festival_16k("Хочу записаться на приём.");
    voice(&mut w, "v1", 16_000, pcm_bytes(&phrase.samples)).await;
    let got = until(&mut w, is_bot).await;
    let echo = got
        .iter()
        .find(|m| m["from"] == "client")
        .unwrap_or_else(|| panic!("no echo: {got:?}"));
    assert_eq!((&echo["id"], &echo["voice"]), (&json!("v1"), &json!(true)));
    let heard = echo["text"].as_str().unwrap().to_lowercase();
    assert!(
        heard.contains("записаться") && heard.contains("при"),
        "recognised: {heard}"
    );
    let answer = got.last().unwrap()["text"].as_str().unwrap();
    assert!(answer.contains("согласны"), "the booking flow: {answer}");

    // Bad audio: an odd number of bytes, a rate nobody records at, audio
    // with no voice message before it, longer than the limit (at 8 kHz, so
    // it fits the byte limit), and a second of silence.
    voice(&mut w, "odd", 16_000, vec![1, 2, 3]).await;
    let e = error_of(&mut w).await;
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("bad_message"), &json!("odd"))
    );
    voice(&mut w, "rate", 1_000, vec![0; 2000]).await;
    let e = error_of(&mut w).await;
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("bad_message"), &json!("rate"))
    );
    w.send(Message::Binary(vec![0u8; 3200].into()))
        .await
        .unwrap();
    assert_eq!(error_of(&mut w).await["code"], "bad_message");
    let long = vec![0u8; (max_s as usize + 1) * 8_000 * 2];
    voice(&mut w, "long", 8_000, long).await;
    let e = error_of(&mut w).await;
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("too_large"), &json!("long"))
    );
    assert!(e["message"].as_str().unwrap().contains("20 секунд"), "{e}");
    voice(&mut w, "quiet", 16_000, vec![0; 32_000]).await;
    let e = error_of(&mut w).await;
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("not_heard"), &json!("quiet"))
    );
    assert!(e["message"].as_str().unwrap().contains("Повторите"), "{e}");

    // The conversation goes on: «да» to the consent question.
    send(&mut w, json!({"type": "text", "id": "t1", "text": "да"})).await;
    let got = until(&mut w, is_bot).await;
    assert!(got.iter().any(|m| m["from"] == "client" && m["id"] == "t1"));

    // Audio over the byte limit: the error, then close code 1009.
    voice(&mut w, "huge", 16_000, vec![0; max_s as usize * 32_000 + 2]).await;
    let (too_large, close) = error_and_close(&mut w).await;
    assert!(too_large, "a clear error first");
    assert_eq!(close, Some(1009));

    // Nothing was lost: the conversation replays each message once, and it
    // goes on from a new socket.
    let mut w2 = ws(&s.base, client).await;
    send(&mut w2, json!({"type": "hello", "last_seq": 0})).await;
    let replay = common::drain(&mut w2, 3).await;
    let ids: Vec<&str> = replay
        .iter()
        .filter(|m| m["from"] == "client")
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, ["v1", "t1"], "{replay:?}");
    send(
        &mut w2,
        json!({"type": "text", "id": "t2", "text": "пенсия"}),
    )
    .await;
    let got = until(&mut w2, is_bot).await;
    assert!(got.iter().any(|m| m["from"] == "client" && m["id"] == "t2"));

    // Voice messages count in the conversation's limit (10 a minute), before
    // they are recognised: a fresh conversation sends short ones.
    let mut w3 = ws(&s.base, "voice-client-2").await;
    send(&mut w3, json!({"type": "hello", "last_seq": 0})).await;
    until(&mut w3, is_bot).await;
    for i in 0..12 {
        voice(&mut w3, &format!("s{i}"), 16_000, vec![0; 1_600]).await;
    }
    let (mut unheard, mut limited) = (0, 0);
    for m in common::drain(&mut w3, 5).await {
        assert!(m["id"].as_str().unwrap().starts_with('s'), "{m}");
        match m["code"].as_str() {
            Some("not_heard") => unheard += 1,
            Some("rate_limited") => limited += 1,
            _ => panic!("unexpected: {m}"),
        }
    }
    assert_eq!(unheard + limited, 12);
    // The greeting took one of the ten.
    assert!(
        limited >= 1 && unheard >= 9,
        "{unheard} heard, {limited} limited"
    );
}

/// With recognition off, the widget is told there is no voice, a voice
/// message gets a clear answer, and binary messages keep the text limit.
#[tokio::test]
async fn web_chat_without_recognition_has_no_voice() {
    let s = start_server(&[("OTKLIK_SPEECH_ENGINE", "none".into())]);
    wait_ready(&s.base).await;
    let mut w = ws(&s.base, "no-voice-1").await;
    send(&mut w, json!({"type": "hello", "last_seq": 0})).await;
    let first = until(&mut w, is_bot).await;
    assert_eq!(first[0]["voice"], false);
    voice(&mut w, "v1", 16_000, vec![0; 3_200]).await;
    let e = error_of(&mut w).await;
    assert_eq!(
        (&e["code"], &e["id"]),
        (&json!("voice_unavailable"), &json!("v1"))
    );
    assert!(e["message"].as_str().unwrap().contains("Напишите"), "{e}");
    // A binary message over the 16 KB text limit: the error, then 1009.
    voice(&mut w, "v2", 16_000, vec![0; 20_000]).await;
    let (too_large, close) = error_and_close(&mut w).await;
    assert!(too_large, "a clear error first");
    assert_eq!(close, Some(1009));
}
