//! The Telegram channel against a Bot API double on loopback: a real axum
//! server speaking the Bot API's JSON, which `otklik serve` polls through
//! teloxide. A whole conversation with inline keyboards and a stale button,
//! HTML escaping, a voice message, consent before the contact button, a 429
//! with retry_after, 5xx errors, a restart in the middle (offset persisted, nothing
//! processed twice), a handoff and an operator's reply from the console.
//! Replies and operators' messages whose sending failed are not lost: delivered when the webhook
//! update comes again, or at the next start in polling mode.

mod common;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CHAT: i64 = 5550001;
const TOKEN: &str = "123456:TEST-token";

#[derive(Default)]
struct Fake {
    updates: Vec<Value>,
    /// (method, request body)
    calls: Vec<(String, Value)>,
    /// sendMessage answers 429 this many times first
    fail_send: u32,
    /// sendMessage answers 400 (not retried) this many times first
    fail_hard: u32,
    /// sendMessage answers a server error this many times first: the Bot
    /// API's JSON 500 and a proxy's HTML 502, alternately
    fail_5xx: u32,
    /// the offsets getUpdates was called with
    offsets: Vec<i64>,
    next_message: i64,
    next_update: i64,
}

type Shared = Arc<Mutex<Fake>>;

fn message_json(id: i64, text: &str) -> Value {
    json!({"message_id": id, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"},
           "from": {"id": 777, "is_bot": true, "first_name": "Помощник", "username": "otklik_bot"}, "text": text})
}

/// A request body as JSON: teloxide posts JSON, or multipart when a method
/// may carry a file (setWebhook); multipart text fields become JSON strings.
fn body_json(bytes: &[u8]) -> Value {
    if let Ok(v) = serde_json::from_slice(bytes) {
        return v;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut out = serde_json::Map::new();
    for part in text
        .split("Content-Disposition: form-data; name=\"")
        .skip(1)
    {
        let Some((name, rest)) = part.split_once('"') else {
            continue;
        };
        let Some((_, value)) = rest.split_once("\r\n\r\n") else {
            continue;
        };
        let value = value.split("\r\n--").next().unwrap_or("").to_string();
        out.insert(name.to_string(), Value::String(value));
    }
    Value::Object(out)
}

async fn api(
    State(f): State<Shared>,
    Path((_bot, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let body = if body.is_empty() {
        json!({})
    } else {
        body_json(&body)
    };
    // Bot API method names are case-insensitive (teloxide sends "SendMessage").
    let method = method.to_lowercase();
    if method == "getupdates" {
        let offset = body["offset"].as_i64().unwrap_or(0);
        for _ in 0..10 {
            {
                let mut g = f.lock().unwrap();
                g.offsets.push(offset);
                let ups: Vec<Value> = g
                    .updates
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap() >= offset)
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
    if method == "sendmessage" {
        if let Some((label, refused)) = refusal(&mut g) {
            g.calls.push((label.into(), body));
            return refused;
        }
    }
    g.calls.push((method.clone(), body.clone()));
    let result = match method.as_str() {
        "sendmessage" | "editmessagereplymarkup" => {
            g.next_message += 1;
            message_json(100 + g.next_message, body["text"].as_str().unwrap_or(""))
        }
        "getme" => {
            json!({"id": 777, "is_bot": true, "first_name": "Помощник", "username": "otklik_bot"})
        }
        _ => json!(true),
    };
    Json(json!({"ok": true, "result": result})).into_response()
}

/// The refusal due for the next sendMessage, if any: the label recorded in
/// `calls` instead of the method, and the answer.
fn refusal(g: &mut Fake) -> Option<(&'static str, Response)> {
    use axum::http::StatusCode;
    let api_error = |status: StatusCode, description: &str, extra: Value| {
        let mut body =
            json!({"ok": false, "error_code": status.as_u16(), "description": description});
        if !extra.is_null() {
            body["parameters"] = extra;
        }
        (status, Json(body)).into_response()
    };
    if g.fail_5xx > 0 {
        g.fail_5xx -= 1;
        let r = if g.fail_5xx % 2 == 1 {
            api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                Value::Null,
            )
        } else {
            (
                StatusCode::BAD_GATEWAY,
                [("content-type", "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response()
        };
        return Some(("5xx", r));
    }
    if g.fail_send > 0 {
        g.fail_send -= 1;
        let r = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            "Too Many Requests: retry after 1",
            json!({"retry_after": 1}),
        );
        return Some(("429", r));
    }
    if g.fail_hard > 0 {
        g.fail_hard -= 1;
        let r = api_error(
            StatusCode::BAD_REQUEST,
            "Bad Request: message is too long",
            Value::Null,
        );
        return Some(("400", r));
    }
    None
}

fn fake_server(f: Shared) -> String {
    let app = Router::new()
        .route("/{bot}/{method}", post(api))
        .with_state(f);
    format!("http://{}", common::serve_in_background(app))
}

struct Chat {
    f: Shared,
    seen: usize,
}

impl Chat {
    fn push(&self, mut update: Value) {
        let mut g = self.f.lock().unwrap();
        g.next_update += 1;
        update["update_id"] = json!(g.next_update);
        g.updates.push(update);
    }

    fn user() -> Value {
        json!({"id": CHAT, "is_bot": false, "first_name": "Иван"})
    }

    fn text(&self, t: &str) {
        let mid = 10_000 + self.f.lock().unwrap().next_update;
        self.push(json!({"message": {"message_id": mid, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Self::user(), "text": t}}));
    }

    fn message(&self, extra: Value) {
        let mid = 10_000 + self.f.lock().unwrap().next_update;
        let mut m = json!({"message_id": mid, "date": 1764140000, "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Self::user()});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        self.push(json!({"message": m}));
    }

    fn press(&self, data: &str) {
        let n = self.f.lock().unwrap().next_update;
        self.push(json!({"callback_query": {"id": format!("cq{n}"), "from": Self::user(), "chat_instance": "ci", "data": data,
            "message": message_json(100, "старое сообщение")}}));
    }

    /// The next call of `method` after the ones already looked at.
    fn next(&mut self, method: &str) -> Value {
        let t0 = Instant::now();
        loop {
            {
                let g = self.f.lock().unwrap();
                if let Some(i) = g.calls[self.seen..]
                    .iter()
                    .position(|(m, _)| *m == method.to_lowercase())
                {
                    self.seen += i + 1;
                    return g.calls[self.seen - 1].1.clone();
                }
            }
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "no {method} call; calls: {:?}",
                self.f.lock().unwrap().calls
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The next bot message (sendMessage) text and body.
    fn reply(&mut self) -> (String, Value) {
        let b = self.next("sendMessage");
        (b["text"].as_str().unwrap().to_string(), b)
    }

    /// No new sendMessage during `secs`.
    fn quiet(&mut self, secs: u64) {
        std::thread::sleep(Duration::from_secs(secs));
        let g = self.f.lock().unwrap();
        let extra: Vec<_> = g.calls[self.seen..]
            .iter()
            .filter(|(m, _)| m == "sendmessage")
            .collect();
        assert!(extra.is_empty(), "unexpected messages: {extra:?}");
    }
}

fn button(body: &Value, id_suffix: &str) -> String {
    body["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap_or_else(|| panic!("no inline keyboard in {body}"))
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|b| b["callback_data"].as_str().unwrap().to_string())
        .find(|d| d.ends_with(id_suffix))
        .unwrap_or_else(|| panic!("no button ending {id_suffix} in {body}"))
}

/// Operator op1 («Анна») signed in to the console, on the test chat's conversation.
struct Console {
    http: reqwest::Client,
    conv: String,
}

impl Console {
    async fn sign_in(base: &str) -> Console {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let r = http
            .post(format!("{base}/api/v1/operator/login"))
            .json(&json!({"login": "op1", "password": common::OPERATOR_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let conv = format!("{base}/api/v1/operator/conversations/telegram:{CHAT}");
        Console { http, conv }
    }

    /// POSTs to the conversation's `action`; the status and the JSON answer.
    async fn post(&self, action: &str, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/{action}", self.conv));
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A bot polling a fresh Bot API double, with its server ready.
struct Bot {
    f: Shared,
    env: Vec<(&'static str, String)>,
    server: common::Server,
    rt: tokio::runtime::Runtime,
    c: Chat,
}

fn polling_bot() -> Bot {
    polling_bot_with(&[])
}

/// A polling bot with more settings.
fn polling_bot_with(extra: &[(&'static str, String)]) -> Bot {
    let f: Shared = Arc::default();
    let mut env = vec![
        ("OTKLIK_TELEGRAM_TOKEN", TOKEN.to_string()),
        ("OTKLIK_TELEGRAM_API_URL", fake_server(f.clone())),
        ("OTKLIK_TELEGRAM_POLL_TIMEOUT_S", "1".to_string()),
    ];
    env.extend(extra.iter().cloned());
    let server = common::start_server(&env);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&server.base));
    let c = Chat {
        f: f.clone(),
        seen: 0,
    };
    Bot {
        f,
        env,
        server,
        rt,
        c,
    }
}

#[test]
fn a_telegram_conversation_end_to_end() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();

    c.text("/start");
    let (t, b) = c.reply();
    assert!(
        t.contains("Здравствуйте") && t.contains("👋"),
        "a friendly greeting with an emoji: {t}"
    );
    assert_eq!(b["parse_mode"], "HTML");
    assert_eq!(
        b["reply_markup"]["keyboard"][0][0]["text"], "Оператор",
        "the persistent operator button: {b}"
    );
    assert_eq!(b["reply_markup"]["is_persistent"], true);

    c.text("пенсия");
    let (t, b) = c.reply();
    assert!(t.contains("Ваш вопрос решён?"), "{t}");
    let no = button(&b, ":no");
    c.press(&no);
    c.next("answerCallbackQuery");
    c.next("editMessageReplyMarkup");
    let (t, _) = c.reply();
    assert!(t.contains("другими словами"), "{t}");
    // The same button again: stale, answered, nothing else happens.
    c.press(&no);
    let a = c.next("answerCallbackQuery");
    assert!(a["text"].as_str().unwrap().contains("неактуален"), "{a}");
    c.quiet(2);

    c.message(json!({"voice": {"file_id": "v1", "file_unique_id": "u1", "duration": 3}}));
    let (t, _) = c.reply();
    assert!(t.contains("понимаю только текст"), "{t}");

    // Consent before any personal data; the contact button only after it.
    c.text("перезвоните мне пожалуйста");
    let (t, b) = c.reply();
    assert!(t.contains("согласны"), "{t}");
    assert!(
        b["reply_markup"]["keyboard"].is_null(),
        "no contact button before consent: {b}"
    );
    c.message(
        json!({"contact": {"phone_number": "+79123456789", "first_name": "Иван", "user_id": CHAT}}),
    );
    let (t, _) = c.reply();
    assert!(
        t.contains("не сохранила"),
        "an unasked contact is not stored: {t}"
    );
    c.press(&button(&b, ":yes"));
    let (t, b) = c.reply();
    assert!(t.contains("номер телефона"), "{t}");
    assert_eq!(
        b["reply_markup"]["keyboard"][0][0]["request_contact"], true,
        "{b}"
    );
    c.message(
        json!({"contact": {"phone_number": "+79123456789", "first_name": "Иван", "user_id": CHAT}}),
    );
    let (t, _) = c.reply();
    assert!(t.contains("Когда Вам удобно"), "{t}");

    // Restart in the middle of the form: the offset and the form survive.
    let last_update = f.lock().unwrap().next_update;
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let t0 = Instant::now();
    while !f
        .lock()
        .unwrap()
        .offsets
        .iter()
        .rev()
        .take(1)
        .any(|o| *o == last_update + 1)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "polling did not resume from the persisted offset: {:?}",
            f.lock().unwrap().offsets
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.quiet(1); // nothing processed twice
    c.text("завтра после 14");
    let (t, _) = c.reply();
    assert!(
        t.contains("Коротко опишите"),
        "the form goes on after the restart: {t}"
    );
    c.text("пропустить");
    let (t, b) = c.reply();
    assert!(t.contains("+79123456789"), "{t}");
    c.press(&button(&b, ":yes"));
    let (t, _) = c.reply();
    assert!(t.contains("Заявка на обратный звонок принята"), "{t}");
    let phones = f
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, b)| {
            m == "sendmessage" && b["text"].as_str().unwrap().contains("Когда Вам удобно")
        })
        .count();
    assert_eq!(phones, 1, "no update was processed twice");

    // A 429 with retry_after: the reply still arrives, once.
    f.lock().unwrap().fail_send = 1;
    c.text("/operator");
    let (t, _) = c.reply();
    assert!(t.contains("Передаю разговор оператору"), "{t}");
    assert!(f.lock().unwrap().calls.iter().any(|(m, _)| m == "429"));

    // The operator answers from the console; HTML in it is escaped. The Bot
    // API fails twice with server errors first (JSON 500, a proxy's HTML
    // 502): retried, delivered once.
    f.lock().unwrap().fail_5xx = 2;
    rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        assert_eq!(op.post("take", json!(null)).await.0, 200);
        let (status, body) = op
            .post(
                "reply",
                json!({"text": "<b>Здравствуйте</b> & добрый день"}),
            )
            .await;
        assert_eq!((status, &body["delivered"]), (200, &json!(true)), "{body}");
    });
    let (t, b) = c.reply();
    assert!(
        t.contains("&lt;b&gt;Здравствуйте&lt;/b&gt; &amp; добрый день"),
        "escaped for HTML: {t}"
    );
    assert_eq!(b["parse_mode"], "HTML");
    let failures = f
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, _)| m == "5xx")
        .count();
    assert_eq!(failures, 2, "both server errors were retried");
    // The bot is silent while the operator holds the conversation.
    c.text("спасибо, жду");
    c.quiet(2);

    // /privacy and /profile.
    c.text("/privacy");
    let (t, b) = c.reply();
    assert!(t.contains("Вы дали согласие"), "{t}");
    assert_eq!(
        b["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "w"
    );
    c.text("/profile");
    let (_, b) = c.reply();
    button(&b, "p:senior");
}

#[test]
fn webhook_mode_checks_the_secret() {
    let f: Shared = Arc::default();
    let api = fake_server(f.clone());
    let secret = "s3cret-s3cret-s3cret";
    let server = common::start_server(&[
        ("OTKLIK_TELEGRAM_TOKEN", TOKEN.to_string()),
        ("OTKLIK_TELEGRAM_API_URL", api),
        ("OTKLIK_TELEGRAM_MODE", "webhook".to_string()),
        (
            "OTKLIK_TELEGRAM_WEBHOOK_URL",
            "https://bot.example.gov.ru/telegram/webhook".to_string(),
        ),
        ("OTKLIK_TELEGRAM_WEBHOOK_SECRET", secret.to_string()),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(common::wait_ready(&server.base));
    let mut c = Chat {
        f: f.clone(),
        seen: 0,
    };
    let hook = c.next("setWebhook");
    assert_eq!(hook["secret_token"], secret);
    let update = json!({"update_id": 1, "message": {"message_id": 1, "date": 1764140000,
        "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Chat::user(), "text": "/start"}});
    rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{}/telegram/webhook", server.base);
        let r = http.post(&url).json(&update).send().await.unwrap();
        assert_eq!(r.status(), 401, "no secret header");
        let r = http
            .post(&url)
            .header("x-telegram-bot-api-secret-token", "wrong")
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "a wrong secret");
        let r = http
            .post(&url)
            .header("x-telegram-bot-api-secret-token", secret)
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Telegram delivering the same update again: not processed twice.
        let r = http
            .post(&url)
            .header("x-telegram-bot-api-secret-token", secret)
            .json(&update)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    let (t, _) = c.reply();
    assert!(t.contains("Здравствуйте"), "{t}");
    c.quiet(1);

    // The reply to an update fails to send: 500, so Telegram sends the
    // update again; the committed reply goes out then, once, and the turn is
    // not run twice.
    f.lock().unwrap().fail_hard = 1;
    let update = json!({"update_id": 2, "message": {"message_id": 2, "date": 1764140001,
        "chat": {"id": CHAT, "type": "private", "first_name": "Иван"}, "from": Chat::user(), "text": "когда придёт пенсия"}});
    rt.block_on(async {
        let http = reqwest::Client::new();
        let url = format!("{}/telegram/webhook", server.base);
        let send = || {
            http.post(&url)
                .header("x-telegram-bot-api-secret-token", secret)
                .json(&update)
                .send()
        };
        assert_eq!(send().await.unwrap().status(), 500, "the send failed");
        assert_eq!(send().await.unwrap().status(), 200, "delivered now");
        assert_eq!(send().await.unwrap().status(), 200, "nothing left to do");
    });
    let failed = c.next("400");
    let (t, _) = c.reply();
    assert_eq!(t, failed["text"].as_str().unwrap(), "the same reply");
    c.quiet(1);
    let texts = f
        .lock()
        .unwrap()
        .calls
        .iter()
        .filter(|(m, b)| m == "sendmessage" && b["text"] == failed["text"])
        .count();
    assert_eq!(texts, 1, "sent once");
    assert!(
        !f.lock()
            .unwrap()
            .calls
            .iter()
            .any(|(m, _)| m == "getupdates"),
        "no polling in webhook mode"
    );
}

#[test]
fn a_reply_that_failed_is_sent_at_the_next_start() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();
    c.text("/start");
    let (t, _) = c.reply();
    assert!(t.contains("Здравствуйте"), "{t}");
    // The answer cannot be sent (a 400 is not retried); polling goes on.
    f.lock().unwrap().fail_hard = 1;
    c.text("когда придёт пенсия");
    let failed = c.next("400");
    c.quiet(1);
    // After a restart the saved reply goes out, once, with its buttons.
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let (t, b) = c.reply();
    assert_eq!(t, failed["text"].as_str().unwrap(), "the same reply");
    assert_eq!(b["reply_markup"], failed["reply_markup"]);
    c.quiet(2);
    // The conversation goes on from there.
    c.text("/operator");
    let (t, _) = c.reply();
    assert!(t.contains("Передаю разговор оператору"), "{t}");
}

#[test]
fn an_operator_message_that_failed_is_sent_later_and_in_order() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();
    c.text("/start");
    c.reply();
    // Telegram is down from here: the bot's answer to the handoff fails...
    f.lock().unwrap().fail_hard = 1;
    c.text("/operator");
    let handoff = c.next("400");
    assert!(
        handoff["text"]
            .as_str()
            .unwrap()
            .contains("Передаю разговор оператору"),
        "{handoff}"
    );
    // ...and so does the operator's message: the console is told it is
    // saved (202), not that it failed, so the operator does not resend it.
    f.lock().unwrap().fail_hard = 1;
    let (status, body) = rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        assert_eq!(op.post("take", json!(null)).await.0, 200);
        op.post("reply", json!({"text": "Проверю Ваше заявление и напишу."}))
            .await
    });
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivered"], false);
    assert!(
        body["notice"].as_str().unwrap().contains("сохранено"),
        "{body}"
    );
    let failed = c.next("400");
    assert_eq!(
        failed["text"], "<b>Анна</b>: Проверю Ваше заявление и напишу.",
        "signed with the operator's name"
    );
    // So is the next one; all three wait.
    f.lock().unwrap().fail_hard = 1;
    let (status, _) = rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        op.post("reply", json!({"text": "Нашла, пишу ответ."}))
            .await
    });
    assert_eq!(status, 202);
    c.next("400");
    c.quiet(1);
    // After a restart they go out once each, in the order they were written
    // (not in the order of their keys: "telegram:out:…" < "telegram:update:…").
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let (t, _) = c.reply();
    assert_eq!(t, handoff["text"].as_str().unwrap());
    let (t, _) = c.reply();
    assert_eq!(t, failed["text"].as_str().unwrap());
    let (t, _) = c.reply();
    assert_eq!(t, "<b>Анна</b>: Нашла, пишу ответ.");
    c.quiet(2);
    // Giving the conversation back: the bot's message is sent at once and
    // not kept, so another restart sends nothing again.
    let (status, body) = rt.block_on(async {
        let op = Console::sign_in(&server.base).await;
        op.post("release", json!(null)).await
    });
    assert_eq!((status, &body["delivered"]), (200, &json!(true)), "{body}");
    let (t, _) = c.reply();
    assert!(!t.starts_with("<b>Анна</b>"), "from the bot: {t}");
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    c.quiet(2);
    drop(server);
}

#[test]
fn deep_links_help_and_stop() {
    // The server runs while `bot` lives.
    let mut bot = polling_bot();
    let c = &mut bot.c;
    // https://t.me/<bot>?start=segment-senior: the senior profile, no emoji.
    c.text("/start segment-senior");
    let (t, _) = c.reply();
    assert!(t.contains("пенсионер"), "the profile is set: {t}");
    let (t, _) = c.reply();
    assert!(
        t.contains("Здравствуйте") && !t.contains('👋'),
        "no emoji for seniors: {t}"
    );
    // A topic deep link opens the intent at once, in the senior wording.
    c.text("/start topic-pension_application");
    let (t, _) = c.reply();
    assert!(t.contains("Здравствуйте"), "{t}");
    let (t, _) = c.reply();
    assert!(
        t.contains("раньше это был Пенсионный фонд") && t.contains("Ваш вопрос решён?"),
        "{t}"
    );
    c.text("/help");
    let (t, _) = c.reply();
    assert!(
        t.contains("/profile") && t.contains("/privacy") && t.contains("Оператор"),
        "{t}"
    );
    c.text("/stop");
    let (t, b) = c.reply();
    assert!(
        t.contains("насколько легко"),
        "/stop closes with the rating: {t}"
    );
    button(&b, ":easy");
}

#[test]
fn the_conversation_rate_limit_holds_on_telegram() {
    let Bot { server, mut c, .. } =
        polling_bot_with(&[("OTKLIK_HTTP_MESSAGES_PER_MINUTE", "3".into())]);
    c.text("/start");
    c.reply();
    for _ in 0..2 {
        c.text("пенсия");
        let (t, _) = c.reply();
        assert!(t.contains("Ваш вопрос решён?"), "{t}");
    }
    c.text("пенсия");
    let (t, _) = c.reply();
    assert!(t.contains("Слишком много сообщений"), "{t}");
    c.quiet(1);
    drop(server);
}

/// A reply holding the client's phone that could not be sent, then
/// «отзываю согласие»: what goes out after the restart no longer has it.
#[test]
fn consent_withdrawal_scrubs_replies_not_yet_delivered() {
    let Bot {
        f,
        env,
        server,
        rt,
        mut c,
    } = polling_bot();
    c.text("/start");
    c.reply();
    c.text("перезвоните мне пожалуйста");
    c.reply();
    c.text("да, согласен");
    c.reply();
    c.text("+7 (912) 345-67-89");
    c.reply();
    c.text("завтра после 14");
    c.reply();
    c.text("пропустить");
    let (t, _) = c.reply();
    assert!(t.contains("+79123456789"), "{t}");
    // Telegram refuses the confirmation, which repeats the phone.
    f.lock().unwrap().fail_hard = 1;
    c.text("да");
    let failed = c.next("400");
    assert!(
        failed["text"].as_str().unwrap().contains("принята"),
        "{failed}"
    );
    c.text("отзываю согласие на обработку персональных данных");
    let (t, _) = c.reply();
    assert!(t.contains("Согласие отозвано"), "{t}");
    let server = server.restart(&env);
    rt.block_on(common::wait_ready(&server.base));
    let (t, _) = c.reply();
    assert!(t.contains("принята"), "the kept reply still goes out: {t}");
    assert!(
        !t.contains("912") && !t.contains("345"),
        "without the phone: {t}"
    );
    c.quiet(1);
}
